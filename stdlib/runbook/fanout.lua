-- runbook.fanout: what a fan-out (parallel, ssh.exec over hosts) records
-- of its items, and which of them `runbook run --retry-failed TRANSCRIPT`
-- runs again.
--
-- Every fan-out a step calls directly (not one inside another's branch)
-- ends with one `fanout` event: { step, index, fanout = k (the k-th of
-- that attempt of the step), primitive, items = n, ok = count,
-- failed = { {i, item, kind}, ... }, untried = { {i, item}, ... } }, and in
-- a retry run retried = { i, ... } and done = count.  `item` names the
-- item (a string or number as it is, a table by its host, name or id),
-- so a retry can tell that the list is still the one it was; only failed
-- and untried items are listed, so 200 hosts that all answered cost one
-- short line.
--
-- --retry-failed reads the old run's `fanout` events (of each step's last
-- attempt) and, in the new run, the k-th fan-out of such a step runs only
-- the items that failed or were not tried there; an item that ended ok is
-- not run again (parallel's result for it is nil, ssh.exec's is { host,
-- ok = true, skipped = true }).  A fan-out the old attempt never reached
-- runs whole.  Pure logic: no C module, so tests/unit/fanout.lua runs it
-- in the plain interpreter.
local M = {}

local LABEL_MAX = 200

-- The name an item goes by in the transcript, or nil when it has none.
function M.label(item)
  local t = type(item)
  if t == "string" then return #item > LABEL_MAX and item:sub(1, LABEL_MAX) or item end
  if t == "number" or t == "boolean" then return tostring(item) end
  if t ~= "table" then return nil end
  for _, k in ipairs({ "host", "name", "id" }) do
    local v = item[k]
    if type(v) == "string" or type(v) == "number" then
      local port = k == "host" and item.port
      return M.label(tostring(v) .. (port and (":" .. tostring(port)) or ""))
    end
  end
  return nil
end

-- The last attempt of each step: its fan-out events by ordinal.  Returns
-- { [step id] = { index =, fanouts = { [k] = event } } }.
local function last_attempts(events)
  local steps = {}
  for _, ev in ipairs(events) do
    if ev.event == "step.start" and ev.id ~= nil then
      steps[ev.id] = { index = ev.index, fanouts = {} }
    elseif ev.event == "fanout" and steps[ev.step] and math.tointeger(ev.fanout) then
      steps[ev.step].fanouts[math.tointeger(ev.fanout)] = ev
    end
  end
  return steps
end

-- The items of one recorded fan-out left to do: { [i] = label | false }
-- and how many, or nil when it had none.
local function left_of(ev)
  local todo, n = {}, 0
  for _, field in ipairs({ "failed", "untried" }) do
    for _, it in ipairs(type(ev[field]) == "table" and ev[field] or {}) do
      local i = type(it) == "table" and math.tointeger(it.i)
      if i and todo[i] == nil then
        todo[i], n = type(it.item) == "string" and it.item or false, n + 1
      end
    end
  end
  return n > 0 and todo or nil, n
end

-- What a run's transcript events leave to retry, as the list of steps
-- (in step order) { id, index, count, fanouts = { [k] = { items = n,
-- primitive, todo = { [i] = label | false } } } }: every step whose last
-- attempt had a fan-out with a failed or untried item; its other fan-outs
-- are there with an empty todo (done: nothing to run again).
function M.selection(events)
  local out = {}
  for id, st in pairs(last_attempts(events)) do
    local entry, count = { id = id, index = st.index, fanouts = {} }, 0
    for k, ev in pairs(st.fanouts) do
      local todo, n = left_of(ev)
      entry.fanouts[k] = { items = math.tointeger(ev.items), primitive = ev.primitive, todo = todo or {} }
      count = count + n
    end
    if count > 0 then
      entry.count = count
      out[#out + 1] = entry
    end
  end
  table.sort(out, function(a, b) return (a.index or 0) < (b.index or 0) end)
  return out
end

-- The step entry of a selection, by step id.
function M.step_of(selection, id)
  for _, s in ipairs(selection or {}) do
    if s.id == id then return s end
  end
  return nil
end

-- Which of items the k-th fan-out of a step runs in a retry: the list of
-- indices, or nil for all of them.  Raises a message when the items are
-- not those of the old run (another count, another item where one failed).
function M.indices(entry, k, items, label)
  local f = entry and entry.fanouts[k]
  if f == nil then return nil end
  if f.items ~= #items then
    error(string.format("--retry-failed: fan-out %d of step %q has %d items now, %s in the run retried: " ..
      "the list changed; refusing to guess which to run again", k, entry.id, #items, tostring(f.items)), 0)
  end
  local list = {}
  for i = 1, #items do
    local want = f.todo[i]
    if want ~= nil then
      local now = (label or M.label)(items[i])
      if want and now ~= want then
        error(string.format("--retry-failed: item %d of fan-out %d of step %q is %s now, %s in the run " ..
          "retried: the list changed; refusing to guess which to run again", i, k, entry.id,
          tostring(now), want), 0)
      end
      list[#list + 1] = i
    end
  end
  return list
end

-- The fields of the `fanout` event for a fan-out of n items: the failed
-- ones (errors that are not 'untried', and results is_failure says
-- failed), the untried ones.  kind_of(err) is the error's kind.
function M.outcome(items, results, errs, ran, is_failure, kind_of, label)
  local failed, untried, ok = {}, {}, 0
  label = label or M.label
  for _, i in ipairs(ran) do
    local e, r = errs[i], results[i]
    if e ~= nil and kind_of(e) == "untried" then
      untried[#untried + 1] = { i = i, item = label(items[i]) }
    elseif e ~= nil then
      failed[#failed + 1] = { i = i, item = label(items[i]), kind = kind_of(e) }
    elseif is_failure and r ~= nil and is_failure(r) then
      failed[#failed + 1] = { i = i, item = label(items[i]), kind = type(r) == "table" and r.kind or nil }
    else
      ok = ok + 1
    end
  end
  return { items = #items, ok = ok, failed = #failed > 0 and failed or nil,
    untried = #untried > 0 and untried or nil }
end

return M
