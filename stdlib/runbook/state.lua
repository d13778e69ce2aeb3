-- runbook.state: the run's `state` table, recorded and restored.
--
-- What a runbook's steps share goes in the global `state`: plain data
-- (strings, numbers, booleans, tables of them) under string keys.  At each
-- step end the engine records what changed since the last record as one
-- `state` event, { step, index, set = { key = value, ... }, unset = { key,
-- ... }, redacted = { key, ... } }, encoded like every event: redacted,
-- so a secret in a value is *** in the transcript.  --resume replays those
-- events, and the resumed run starts with the state the old run left (it
-- records that state first, so a resume of the resumed run has it too).
--
-- A key whose value does not come back from the transcript as it was (a
-- secret in it, a function or a connection handle, a string cut for
-- length) is listed in `redacted`.  --resume gives it back as recorded,
-- except where a whole value was hidden: a string or number recorded as
-- "***" comes back nil, never as if "***" were the password; and it says
-- which keys came back so.
local cjson = require("cjson")
local transcript = require("runbook.transcript")
local ui = require("runbook.ui")

local M = {}

local MAX_DEPTH = 64

local function copy(v, depth)
  if type(v) ~= "table" or (depth or 0) > MAX_DEPTH then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = copy(x, (depth or 0) + 1) end
  return out
end

-- The transcript writes a float with 14 significant digits: a value read
-- back that close is the same value.
local function same_number(a, b)
  if a == b then return true end
  if math.type(a) ~= "float" and math.type(b) ~= "float" then return false end
  return math.abs(a - b) <= 1e-13 * math.max(math.abs(a), math.abs(b))
end

local function same(a, b, depth)
  local ta = type(a)
  if ta ~= type(b) then return false end
  if ta == "number" then return same_number(a, b) end
  if ta ~= "table" then return a == b end
  if a == b then return true end
  depth = (depth or 0) + 1
  if depth > MAX_DEPTH then return false end
  for k, x in pairs(a) do
    if not same(x, b[k], depth) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

-- A value as the transcript gives it back: integral numbers as integers
-- (JSON has one kind of number), JSON null as nil.
local function from_json(v)
  if v == cjson.null then return nil end
  if math.type(v) == "float" then return math.tointeger(v) or v end
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = from_json(x) end
  return out
end

-- Does v come back from the transcript as it is?
local function faithful(v)
  local ok, text = pcall(transcript.encode, { v = v })
  if not ok then return false end
  local okd, t = pcall(cjson.decode, "{" .. text .. "}")
  return okd and type(t) == "table" and same(v, from_json(t.v))
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

-- What changed since the last record: set (key -> value), unset and
-- redacted (sorted key lists).  A key that is not a string is recorded by
-- its text, and listed as redacted.
local function changes(run)
  local seen, set, unset, lost, n = run.state_seen or {}, {}, {}, {}, 0
  for k, v in pairs(run.state) do
    if not same(v, seen[k]) then
      local key = type(k) == "string" and k or tostring(k)
      set[key], n = v, n + 1
      if key ~= k or not faithful(v) then lost[#lost + 1] = key end
    end
  end
  for k in pairs(seen) do
    if run.state[k] == nil then unset[#unset + 1] = tostring(k); n = n + 1 end
  end
  table.sort(unset)
  table.sort(lost)
  return n, set, unset, lost
end

-- At a step's end: one `state` event with what the step changed, when it
-- changed anything.
function M.record(run, step)
  if not run.rec or not run.state then return end
  local n, set, unset, lost = changes(run)
  if n == 0 then return end
  run.rec:event("state", { step = step.id, index = step.index, set = next(set) and set or nil,
    unset = #unset > 0 and unset or nil, redacted = #lost > 0 and lost or nil })
  run.state_seen = copy(run.state)
end

-- A redacted value as --resume gives it back: what was hidden whole
-- ("***") is left out.
local function scrub(v)
  if v == "***" then return nil end
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = scrub(x) end
  return out
end

-- The state a transcript's run left: its `state` events replayed in
-- order.  Returns the state and the keys given back redacted (key -> true).
function M.replay(events)
  local st, lost = {}, {}
  for _, ev in ipairs(events) do
    if ev.event == "state" then
      for k, v in pairs(type(ev.set) == "table" and ev.set or {}) do
        st[k], lost[k] = from_json(v), nil
      end
      for _, k in ipairs(type(ev.unset) == "table" and ev.unset or {}) do st[k], lost[k] = nil, nil end
      for _, k in ipairs(type(ev.redacted) == "table" and ev.redacted or {}) do
        st[k], lost[k] = scrub(st[k]), true
      end
    end
  end
  return st, lost
end

-- At the start of a resumed run: the old run's state, into the run's own
-- table (the one the runbook's `state` names), recorded as this run's
-- first `state` event.
function M.restore(run)
  local from = run.resume_from
  if not from or not from.state then return end
  for k, v in pairs(from.state) do run.state[k] = v end
  local lost = sorted_keys(from.state_lost or {})
  for _, k in ipairs(lost) do
    ui.log("warn", string.format("state.%s comes back as the resumed run recorded it: without what " ..
      "it held secret (or not as plain data); a value hidden whole (***) is nil", k))
  end
  if next(from.state) == nil then return end
  run.rec:event("state", { restored_from = from.run, set = copy(from.state),
    redacted = #lost > 0 and lost or nil })
  run.state_seen = copy(run.state)
end

return M
