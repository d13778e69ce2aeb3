-- The event loop's task rules, through the binary.
runbook { name = "loop-test", title = "Event loop tasks", severity = "P3" }

local loop = require("runbook.loop")
local collectgarbage = require("_G").collectgarbage   -- not offered to runbooks

-- What the first step's unjoined task did: `finished` when its 30 s wait
-- ended (it must not have by the second step), `collected` once the
-- collector took what it held.
local orphan = { finished = false, collected = false }

step("A spawned task that is never joined does not hold up its step", function()
  loop.spawn(function()
    local held = setmetatable({}, { __gc = function() orphan.collected = true end })
    loop.sleep(30)
    orphan.finished = held ~= nil
  end)
end)

step("The next step starts at once after the previous one ended", { id = "after" }, function()
  -- Had the first step waited for its task, that task's wait would have
  -- ended before this step started.
  assert(not orphan.finished, "the previous step waited for the task it spawned and never joined")
  -- Nothing of it is left to wait on: the loop dropped it when its step
  -- ended, so what it held is garbage now.
  collectgarbage()
  collectgarbage()
  assert(orphan.collected, "the unjoined task of the previous step is still alive")
end)

step("A step timeout stops a wait with its own message", { timeout = 0.3 }, function()
  local child
  loop.spawn(function()
    local ok, err = pcall(loop.sleep, 30)
    child = ok and "slept 30 s" or tostring(err)
  end)
  local ok, err = pcall(loop.sleep, 30)
  assert(not ok, "a 30 s sleep outlived the step's 0.3 s timeout")
  local want = "wait: sleep stopped: the step's timeout ran out"
  assert(tostring(err) == want, string.format("expected %q, got %q", want, tostring(err)))
  loop.join()
  assert(child == want, string.format("a child inherits the step's timeout: expected %q, got %q", want,
    tostring(child)))
end)

step("loop.run inside a task is refused: the engine owns the root task", function()
  local ok, err = pcall(function()
    loop.run({ timeout = 0.2 }, function() loop.sleep(5) end)
  end)
  assert(not ok and tostring(err):find("already inside a task"), tostring(err))
end)

step("join waits for every child and sees their work", function()
  local done = {}
  for i = 1, 5 do loop.spawn(function() loop.sleep(0.01 * i); done[#done + 1] = i end) end
  loop.join()
  assert(#done == 5, "expected 5 children done after join, got " .. #done)
end)

-- A detached task (runbook.cadence's watcher beside a step): it runs while
-- the step waits, no join waits for it, and it ends with its step.
local detached = { ticks = 0 }

step("A detached task runs beside the step and no join waits for it", { timeout = 5 }, function()
  loop.detach(function()
    while true do
      local ok, err = pcall(loop.sleep, 0.01)
      if not ok then detached.stopped = tostring(err); return end
      detached.ticks = detached.ticks + 1
    end
  end)
  -- Had join counted the detached task, which never ends, it would have
  -- waited until the step's timeout stopped that task's sleep.
  parallel({ 1, 2 }, function() loop.sleep(0.1) end)
  for i = 1, 3 do loop.spawn(function() loop.sleep(0.01 * i) end) end
  loop.join()
  assert(detached.stopped == nil, "join waited for the detached task until the step's timeout stopped it: " ..
    tostring(detached.stopped))
  assert(detached.ticks > 0, "the detached task did not run while the step waited")
end)

step("A detached task is dropped when its step ends", function()
  local seen = detached.ticks
  loop.sleep(0.1)
  assert(detached.ticks == seen, "the previous step's detached task still runs")
end)
