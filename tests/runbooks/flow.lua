-- Used by tests/cli/test_run.py: params, step order, outcomes, exit codes.
runbook { name = "flow", title = "Steps in order", severity = "P3" }
param("who", { help = "who to greet", default = "world" })
param("dir", { help = "a directory the steps write marks into", required = true })
param("fail_at", { help = "the step id that fails", default = "none" })
param("color", { help = "a colour", default = "blue", choices = { "blue", "red" } })

-- Each step leaves a file named after it, holding p.who.
local function mark(p, name)
  file.write(p.dir .. "/" .. name, p.who .. "\n")
end

step("Greet", { id = "greet" }, function(p)
  mark(p, "1-greet")
  log.info("hello %s in %s", p.who, p.color)
  if p.fail_at == "greet" then error("greet failed on purpose") end
end)

step("Run a command", { id = "cmd" }, function(p)
  mark(p, "2-cmd")
  local r = exec { "echo", "from", "exec" }
  log.info("exec said %s", r.stdout:gsub("%s+$", ""))
  if p.fail_at == "cmd" then exec { "sh", "-c", "echo broken >&2; exit 3" } end
end)

step("Levels", { id = "levels" }, function(p)
  mark(p, "3-levels")
  log.info("an info line")
  log.warn("a warn line")
  log.error("an error line")
  if p.fail_at == "levels" then error("levels failed on purpose") end
end)
