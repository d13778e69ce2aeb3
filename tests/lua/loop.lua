-- The event loop's task rules, through the binary.
runbook { name = "loop-test", title = "Event loop tasks", severity = "P3" }

local loop = require("runbook.loop")

step("A spawned task that is never joined does not hold up its step", function()
  loop.spawn(function() loop.sleep(30) end)
end)

step("The next step starts at once after the previous one ended", { id = "after" }, function()
  -- Nothing of the orphan is left to wait on: a short sleep takes its time.
  local t0 = loop.now()
  loop.sleep(0.05)
  local dt = loop.now() - t0
  assert(dt < 1, string.format("expected a 0.05 s sleep, it took %.2f s", dt))
end)

step("A step timeout stops a wait with its own message", function()
  local ok, err = pcall(function()
    loop.run({ timeout = 0.2 }, function() loop.sleep(5) end)
  end)
  -- loop.run inside a task is refused: the engine owns the root task.
  assert(not ok and tostring(err):find("already inside a task"), tostring(err))
end)

step("join waits for every child and sees their work", function()
  local done = {}
  for i = 1, 5 do loop.spawn(function() loop.sleep(0.01 * i); done[#done + 1] = i end) end
  loop.join()
  assert(#done == 5, "expected 5 children done after join, got " .. #done)
end)
