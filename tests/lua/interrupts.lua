-- pcall and xpcall in a runbook let Ctrl-C through (the engine's
-- retry/skip/abort must see it); other errors are caught as usual.
runbook { name = "lua-interrupts", title = "pcall and Ctrl-C", severity = "P3" }
local check = require("lib.check")
local eq, has = check.eq, check.has
local loop = require("runbook.loop")

step("pcall still catches ordinary errors", function()
  local ok, err = pcall(error, "boom", 0)
  eq(ok, false, "pcall of a failing function")
  eq(err, "boom", "its error")
  local ok2, v = xpcall(function() return 42 end, function(e) return e end)
  eq(ok2, true, "xpcall of a working function")
  eq(v, 42, "its result")
end)

step("a Ctrl-C during a wait inside pcall escapes the pcall", function()
  local pid = require("runbook.sys").getpid()
  local inner = "the inner pcall never returned"
  -- The handler sees the interrupt after it escaped the inner pcall, and
  -- acknowledges it, so this xpcall may return: the step can then look.
  local ok, err = xpcall(function()
    local inner_ok = pcall(function()
      exec { "sh", "-c", "sleep 0.2; kill -INT " .. pid, readonly = true, quiet = true }
      wait(5)
    end)
    inner = "the inner pcall returned " .. tostring(inner_ok)
  end, function(e)
    loop.ack_interrupt()
    return e
  end)
  eq(ok, false, "the outer xpcall")
  has(err, "interrupted (Ctrl-C)", "the error that reached it")
  eq(inner, "the inner pcall never returned", "the inner pcall")
end)
