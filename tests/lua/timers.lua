-- wait and poll on the event loop, and a step's own timeout.
-- Run by tests/run_lua_test.py as a runbook with --yes; each step asserts.
runbook { name = "lua-timers", title = "wait and poll", severity = "P3" }

local debug = require("debug")
local loop = require("runbook.loop")
local FILE = debug.getinfo(1, "S").short_src

local check = require("lib.check")
local fail, eq, has, err_of = check.fail, check.eq, check.has, check.err_of
local function at(line) return FILE .. ":" .. line .. ": " end

step("wait sleeps for the time asked", function()
  local t0 = loop.now()
  wait(0.2)
  local took = loop.now() - t0
  assert(took >= 0.19 and took < 0.6, string.format("wait(0.2) took %.3f s", took))
  t0 = loop.now()
  wait(0)
  assert(loop.now() - t0 < 0.1, "wait(0) did not return at once")
end)

step("wait rejects a bad argument at the runbook line", function()
  local e1 = err_of(function() wait(-1) end); local l1 = debug.getinfo(1, "l").currentline
  eq(e1, at(l1) .. "wait: expected seconds >= 0", "wait(-1)")
  local e2 = err_of(function() wait("soon") end); local l2 = debug.getinfo(1, "l").currentline
  eq(e2, at(l2) .. "wait: expected seconds >= 0", "wait('soon')")
end)

step("poll returns the first truthy value", function()
  local n = 0
  local t0 = loop.now()
  local v = poll(function() n = n + 1; return n >= 3 and ("ready after " .. n) end,
    { every = 0.05, timeout = 5, what = "the counter reaches 3" })
  eq(v, "ready after 3", "value")
  eq(n, 3, "calls")
  local took = loop.now() - t0
  assert(took >= 0.09 and took < 1, string.format("3 tries every 0.05 s took %.3f s", took))
end)

step("poll can wait on a process", function()
  local f = os.tmpname()
  os.remove(f)
  local n = 0
  poll(function()
    n = n + 1
    if n == 2 then exec { "touch", f } end
    return exec { "test", "-e", f, check = false }.ok
  end, { every = 0.02, timeout = 5, what = "the file exists" })
  os.remove(f)
  eq(n, 2, "tries")
end)

step("poll gives up after its timeout with a message naming what it waited for", function()
  local t0 = loop.now()
  local err = err_of(function()
    poll(function() return false end, { every = 0.05, timeout = 0.3, what = "the replica catches up" })
  end); local line = debug.getinfo(1, "l").currentline - 1
  local took = loop.now() - t0
  has(err, at(line) .. "poll: the replica catches up still not true after ", "error")
  assert(err:match("%(%d+ attempts, every 50 ms%)$"), "attempts and interval missing: " .. err)
  assert(took < 1, string.format("poll with timeout 0.3 s took %.3f s", took))
end)

step("a step's timeout stops its waits", { timeout = 0.3 }, function()
  local t0 = loop.now()
  local err = err_of(function() wait(5) end)
  local took = loop.now() - t0
  has(err, "wait: sleep stopped: the step's timeout ran out", "error")
  assert(took < 1, string.format("a 0.3 s step timeout stopped wait(5) after %.3f s", took))
end)

step("a step's timeout stops exec too", { timeout = 0.3 }, function()
  local err = err_of(function() exec { "sleep", "5" } end)
  has(err, "exec sleep: wait stopped: the step's timeout ran out", "error")
end)
