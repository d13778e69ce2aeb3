-- parallel: results in the order of the items, real concurrency of local
-- processes from one thread (how many branches wait at once, never a wall
-- clock: a loaded machine must not fail the suite), limits, failures.
-- Run by tests/run_lua_test.py as a runbook with --yes; each step asserts.
runbook { name = "lua-parallel", title = "parallel", severity = "P3" }

local loop = require("runbook.loop")

local check = require("lib.check")
local fail, eq, has = check.fail, check.eq, check.has

step("results come back in the order of the items, whatever order they finish in", function()
  -- item i's process waits until item i+1 has finished: they end 4, 3, 2, 1
  -- however loaded the machine is
  local dir = exec { "mktemp", "-d" }.stdout:gsub("%s+$", "")
  local finished = {}
  local res = parallel({ 1, 2, 3, 4 }, function(i)
    local r = exec { "sh", "-c", string.format(
      "n=0; while [ %d -lt 4 ] && [ ! -e %s/done-%d ]; do sleep 0.01; n=$((n+1)); " ..
      "[ $n -gt 3000 ] && exit 9; done; echo %d", i, dir, i + 1, i) }
    finished[#finished + 1] = i
    exec { "touch", dir .. "/done-" .. i }
    return tonumber(r.stdout)
  end)
  exec { "rm", "-rf", dir }
  eq(table.concat(res, ","), "1,2,3,4", "results")
  eq(table.concat(finished, ","), "4,3,2,1", "completion order (each item waits for the next)")
end)

-- Each branch counts itself in before its process starts and out after it
-- ended: six at once means every process ran while the others waited.
local function overlap(items, body, opts)
  local running, most = 0, 0
  local t0 = loop.now()
  parallel(items, function(...)
    running = running + 1
    if running > most then most = running end
    body(...)
    running = running - 1
  end, opts)
  return most, loop.now() - t0
end

step("local processes run at the same time: 6 branches wait on 6 live processes", function()
  local pids = {}
  local most, wall = overlap({ 1, 2, 3, 4, 5, 6 }, function(i)
    pids[i] = exec { "sh", "-c", "echo $$; sleep 0.5" }.stdout
  end)
  log.info("6 x sleep 0.5 in parallel: %.3f s of wall time (3.0 s one after another)", wall)
  eq(most, 6, "branches waiting on their process at once")
  local seen = {}
  for i = 1, 6 do
    assert(not seen[pids[i]], "two branches ran the same process " .. tostring(pids[i]))
    seen[pids[i]] = true
  end
end)

step("all of it from one thread", function()
  local res = parallel({ 1, 2, 3 }, function()
    return exec { "sh", "-c", "sleep 0.2; grep '^Threads:' /proc/$PPID/status; echo $PPID" }.stdout
  end)
  for i = 1, 3 do
    local threads, ppid = res[i]:match("Threads:%s*(%d+)%s+(%d+)")
    eq(threads, "1", "threads of the runbook process during parallel")
    eq(ppid, res[1]:match("(%d+)%s*$"), "every branch's parent is the same process")
  end
end)

step("timers run at the same time too", function()
  local res = {}
  local most = overlap({ 0.3, 0.3, 0.3, 0.3 }, function(d, i) wait(d); res[i] = i * 10 end)
  eq(table.concat(res, ","), "10,20,30,40", "results")
  eq(most, 4, "branches waiting on their timer at once")
end)

step("limit bounds how many run at once", function()
  local done = 0
  local most = overlap({ 1, 2, 3, 4 }, function() exec { "sleep", "0.3" }; done = done + 1 end, { limit = 2 })
  eq(most, 2, "most branches running at once")
  eq(done, 4, "items that ran")
end)

step("a failing item raises naming it, after every item has run", function()
  local ran = 0
  local ok, err = pcall(parallel, { 1, 2, 3 }, function(i)
    wait(0.05)
    ran = ran + 1
    if i == 2 then error("item two broke") end
    return i
  end)
  eq(ok, false, "pcall result")
  has(err, "parallel: 1 of 3 failed: [2] ", "error")
  has(err, "item two broke", "error")
  eq(ran, 3, "items that ran")
end)

step("check = false returns the results and the errors", function()
  local res, errs = parallel({ 1, 2, 3 }, function(i)
    if i == 2 then exec { "false" } end
    return i * 10
  end, { check = false })
  eq(res[1], 10, "res[1]")
  eq(res[2], nil, "res[2]")
  eq(res[3], 30, "res[3]")
  has(errs[2], "exec false: exited with code 1", "errs[2]")
end)

step("an empty list gives an empty result", function()
  local res = parallel({}, function() error("never called") end)
  eq(#res, 0, "results")
end)

step("max_errors stops launching new items once more than it have failed", function()
  local items, started = {}, 0
  for i = 1, 20 do items[i] = i end
  local ok, err = pcall(parallel, items, function(i)
    started = started + 1
    wait(0.01)
    if i % 2 == 0 then error("item " .. i .. " broke") end
    return i
  end, { limit = 2, max_errors = "10%" })      -- 10% of 20: the third failure stops it
  eq(ok, false, "raised")
  eq(started, 7, "items started (1-7: 2, 4, 6 failed)")
  has(err, "3 of 20 failed", "counted")
  has(err, "13 not tried (past max_errors)", "untried said")
  local _, errs = parallel(items, function(i) if i <= 2 then error("x") end return i end,
    { limit = 1, max_errors = 1, check = false })
  eq(errs[3].kind, "untried", "the next item's error kind")
  eq(#errs, 20, "every item has a result or an error")
  local bad = pcall(parallel, items, function() end, { max_errors = -1 })
  eq(bad, false, "a negative budget is a usage error")
end)
