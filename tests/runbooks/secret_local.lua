-- Used by tests/e2e/test_secret_paths.py: secrets read by local calls.
-- The test plants them in files under -p dir=...; each step reads one and
-- writes what it got to DIR/<step>.got, so the test can tell the runbook
-- had the value while nothing else showed or kept it.
runbook { name = "secret-local", title = "Secrets read by local calls", severity = "P3" }
param("dir", { help = "the directory holding the planted files", required = true })
param("only", { help = "run only the step with this id" })
param("pw", { help = "a short secret param", secret = true, default = "none" })

local planted = require("lib.planted")
local wanted, save = planted.wanted, planted.save

step("exec secret = true", { id = "exec" }, function(p)
  if not wanted(p, "exec") then return end
  local pw = exec { "cat", p.dir .. "/exec.txt", secret = true, readonly = true }.stdout
  log.info("exec read %d bytes: %s", #pw, pw)
  log.info("trimmed: %s", (pw:gsub("%s+$", "")))
  save(p, "exec", pw)
end)

step("sh secret = true", { id = "sh" }, function(p)
  if not wanted(p, "sh") then return end
  local r = sh("cat " .. p.dir .. "/sh.txt", { secret = true, readonly = true })
  log.info("sh read: %s", r.stdout)
  save(p, "sh", r.stdout)
end)

step("A failing secret command", { id = "fail" }, function(p)
  if not wanted(p, "fail") then return end
  local ok, err = pcall(exec, { "sh", "-c", "cat " .. p.dir .. "/fail.txt; exit 3", secret = true })
  log.warn("failed as expected: %s", tostring(err))
  assert(not ok, "the command should have failed")
  local r = exec { "sh", "-c", "cat " .. p.dir .. "/fail.txt; exit 3", secret = true, check = false }
  save(p, "fail", r.stdout)
end)

step("A multi-line secret", { id = "multiline" }, function(p)
  if not wanted(p, "multiline") then return end
  local key = secret(planted.read(p, "key.pem"))
  exec { "cat", p.dir .. "/key.pem", readonly = true }
  for line in key:gmatch("[^\n]+") do print(line) end
  log.info("key without its newline: %s", (key:gsub("\n$", "")))
  save(p, "multiline", key)
end)

step("env() in a runbook", { id = "env" }, function(p)
  if not wanted(p, "env") then return end
  local v = env("RB_PLANTED_ENV")
  log.info("env gave %s", v)
  save(p, "env", v)
end)

step("exec with env", { id = "exec-env" }, function(p)
  if not wanted(p, "exec-env") then return end
  local setting = file.read(p.dir .. "/env.txt"):match("[^\n]*")
  local r = exec { "sh", "-c", 'printf "%s" "$APP_SETTING" > "$OUT"; echo "pw=$PGPASSWORD"',
    env = { APP_SETTING = setting, PGPASSWORD = setting .. "-pg", OUT = p.dir .. "/exec-env.got" },
    readonly = true }
  log.info("child said %s", r.stdout)
end)

step("A short secret param", { id = "param" }, function(p)
  if not wanted(p, "param") then return end
  save(p, "param", p.pw)
end)
