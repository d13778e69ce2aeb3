-- exec and sh: the result table, check=, argv without a shell, stdin, env,
-- cwd, timeouts that kill the whole process group, and error messages.
-- Run by tests/run_lua_test.py as a runbook with --yes; each step asserts.
runbook { name = "lua-exec", title = "exec and sh", severity = "P3" }

local debug = require("debug")
local loop = require("runbook.loop")
local FILE = debug.getinfo(1, "S").short_src

local check = require("lib.check")
local fail, eq, has, err_of = check.fail, check.eq, check.has, check.err_of
local function at(line) return FILE .. ":" .. line .. ": " end
-- A pid is gone when /proc has no entry or only a zombie is left.
local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return false end
  local stat = f:read("a")
  f:close()
  return stat:match("%) (%a)") ~= "Z"
end

local tmp
step("make a scratch directory", function()
  tmp = (exec { "mktemp", "-d" }.stdout:gsub("%s+$", ""))
  assert(tmp:match("^/"), "mktemp gave " .. tmp)
end)

step("exec returns code, ok, stdout, stderr and duration", function()
  local r = exec { "sh", "-c", "echo out; echo err >&2" }
  eq(r.code, 0, "code")
  eq(r.ok, true, "ok")
  eq(r.stdout, "out\n", "stdout")
  eq(r.stderr, "err\n", "stderr")
  assert(type(r.duration) == "number" and r.duration >= 0, "duration missing")
end)

step("a non-zero exit raises with the command, code, stderr and the runbook line", function()
  local err = err_of(function() exec { "sh", "-c", "echo why it broke >&2; exit 3" } end); local line = debug.getinfo(1, "l").currentline
  eq(err, at(line) .. "exec sh: exited with code 3: why it broke", "error")
end)

step("check = false returns the failed result instead of raising", function()
  local r = exec { "sh", "-c", "echo partial; echo bad >&2; exit 4", check = false }
  eq(r.code, 4, "code")
  eq(r.ok, false, "ok")
  eq(r.stdout, "partial\n", "stdout")
  eq(r.stderr, "bad\n", "stderr")
end)

step("argv reaches the program as is, never through a shell", function()
  local r = exec { "printf", "[%s]", "$HOME", "*", "a b", ";", "|", "`id`", "'q'" }
  eq(r.stdout, "[$HOME][*][a b][;][|][`id`]['q']", "argv")
end)

step("a signal shows in code and signal", function()
  local r = exec { "sh", "-c", "kill -9 $$", check = false }
  eq(r.code, 137, "code")
  eq(r.ok, false, "ok")
  eq(r.signal, "Killed", "signal")
end)

step("sh runs a command line through /bin/sh", function()
  local r = sh("echo $((6 * 7)) | tr -d '\\n'")
  eq(r.stdout, "42", "stdout")
  local f = sh("exit 5", { check = false })
  eq(f.code, 5, "code")
  local err = err_of(function() sh("echo no >&2; exit 6") end); local line = debug.getinfo(1, "l").currentline
  has(err, at(line), "position")
  has(err, "exited with code 6: no", "error")
end)

step("stdin is fed to the process, more than a pipe holds", function()
  eq(exec { "cat", stdin = "line one\nline two\n" }.stdout, "line one\nline two\n", "cat")
  local big = string.rep("0123456789", 30000)
  eq(exec { "wc", "-c", stdin = big }.stdout:match("%d+"), "300000", "bytes through stdin")
  eq(exec { "cat" }.stdout, "", "stdin is /dev/null when not given")
end)

step("output larger than a pipe is collected whole", function()
  local r = exec { "head", "-c", "1000000", "/dev/zero", quiet = true }
  eq(#r.stdout, 1000000, "stdout bytes")
end)

step("env adds variables and keeps the rest; cwd sets the directory", function()
  local r = exec { "sh", "-c", 'printf "%s:%s" "$RB_ADDED" "$HOME"', env = { RB_ADDED = "yes" } }
  eq(r.stdout, "yes:" .. os.getenv("HOME"), "environment")
  eq(exec { "pwd", cwd = tmp }.stdout, tmp .. "\n", "cwd")
end)

step("a timeout kills the whole process group and raises 'timed out'", function()
  local pidfile = tmp .. "/grandchild.pid"
  local t0 = loop.now()
  local err = err_of(function()
    exec { "sh", "-c", 'sleep 30 & echo $! > "$1"; echo $$ > "$1.sh"; wait', "sh", pidfile, timeout = 0.5 }
  end)
  local took = loop.now() - t0
  has(err, "exec sh: run timed out after 0.5 s", "error")
  assert(took >= 0.45 and took < 3, string.format("timeout of 0.5 s took %.2f s", took))
  local gc = assert(io.open(pidfile)):read("n")
  local child = assert(io.open(pidfile .. ".sh")):read("n")
  poll(function() return not alive(gc) and not alive(child) end,
    { every = 0.05, timeout = 3, what = "the timed-out shell and its sleep are gone" })
end)

step("a command that is not installed raises saying so", function()
  local err = err_of(function() exec { "rb-no-such-command" } end); local line = debug.getinfo(1, "l").currentline
  eq(err, at(line) .. "exec: cannot run 'rb-no-such-command': No such file or directory " ..
    "(check it is installed and on PATH)", "error")
end)

step("misuse raises at the runbook line", function()
  local e1 = err_of(function() exec("ls") end); local l1 = debug.getinfo(1, "l").currentline
  eq(e1, at(l1) .. "exec: expected a table {argv..., timeout=}", "exec(string)")
  local e2 = err_of(function() exec {} end); local l2 = debug.getinfo(1, "l").currentline
  eq(e2, at(l2) .. "exec: no command given", "exec{}")
  local e3 = err_of(function() sh({ "ls" }) end); local l3 = debug.getinfo(1, "l").currentline
  eq(e3, at(l3) .. "sh: expected a command string", "sh(table)")
end)

step("pcall around a failing exec lets the step go on", function()
  local ok, err = pcall(exec, { "false" })
  eq(ok, false, "pcall result")
  has(err, "exec false: exited with code 1", "error")
  eq(exec { "echo", "still here" }.stdout, "still here\n", "next exec")
end)

step("remove the scratch directory", function()
  exec { "rm", "-rf", tmp }
end)
