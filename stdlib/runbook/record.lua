-- runbook.record: events into the transcript.
--
-- A run's events pass through here: values are made JSON-safe, every string
-- is redacted (secret params and prompts, secret() values, URL passwords),
-- then cjson encodes the fields and the C writer chains and appends the line.
local cjson = require("cjson")
local transcript = require("runbook.transcript")
local sys = require("runbook.sys")

local record = {}

local MAX_STRING = 64 * 1024   -- a call's output beyond this is cut in the record

-- Members whose value is a credential whatever it holds.
local SENSITIVE = { authorization = true, ["proxy-authorization"] = true, cookie = true,
  ["set-cookie"] = true, password = true, passphrase = true, ["x-api-key"] = true }

local function clean(value, depth)
  local t = type(value)
  if t == "string" then
    local s = transcript.redact(value)
    if #s > MAX_STRING then
      s = s:sub(1, MAX_STRING) .. string.format("... [%d bytes cut]", #s - MAX_STRING)
    end
    return s
  elseif t == "number" then
    if value ~= value or value == math.huge or value == -math.huge then return tostring(value) end
    return value
  elseif t == "boolean" or t == "nil" then
    return value
  elseif t == "table" and depth < 8 then
    local out = {}
    for k, v in pairs(value) do
      local key = type(k) == "number" and k or tostring(k)   -- keys are ours: never redacted
      if type(key) == "string" and SENSITIVE[key:lower()] and v ~= nil then
        out[key] = "***"
      else
        out[key] = clean(v, depth + 1)
      end
    end
    return out
  end
  return tostring(value)
end

-- Mark a value as secret: from now on it is shown as *** on screen and in
-- the transcript.  Values under 4 characters are not hunted as substrings
-- (a 1-letter "secret" would blank every such letter of the record); the
-- places that know a value is secret (secret params, secret prompts)
-- record "***" for it whatever its length.
record.MIN_SECRET = 4
function record.secret(value)
  value = tostring(value)
  if #value >= record.MIN_SECRET then transcript.secret(value) end
  return value
end

-- Encode a fields table as the members of a JSON object (no braces).
function record.encode(fields)
  if fields == nil or next(fields) == nil then return "" end
  local json = cjson.encode(clean(fields, 0))
  return json:sub(2, -2)
end

-- The directory for transcripts: $XDG_STATE_HOME/runbook/transcripts, else
-- ~/.local/state/runbook/transcripts.
function record.default_dir()
  local state = os.getenv("XDG_STATE_HOME")
  if state == nil or state == "" then
    local home = os.getenv("HOME") or "."
    state = home .. "/.local/state"
  end
  return state .. "/runbook/transcripts"
end

-- Open a writer.  path may be nil (a fresh name in the default directory).
function record.open(name, path)
  local run_id = os.date("!%Y%m%dT%H%M%SZ") .. "-" .. sys.random_hex(4)
  if path == nil then
    local dir = record.default_dir()
    sys.mkdirs(dir, 448)   -- 0700
    local safe = (name or "run"):gsub("[^%w%-_.]", "_")
    path = string.format("%s/%s-%s.jsonl", dir, safe, run_id)
  end
  local ok, writer = pcall(transcript.open, path, run_id)
  if not ok then return nil, writer end
  return setmetatable({ writer = writer, run_id = run_id, path = path }, { __index = record })
end

function record:event(event, fields)
  self.writer:append(event, record.encode(fields))
end

function record:sync()
  self.writer:sync()
end

function record:hash()
  return self.writer:hash()
end

function record:close()
  self.writer:close()
end

-- Read a transcript back as a list of decoded events (for --resume, report).
function record.read(path)
  local f, err = io.open(path, "r")
  if not f then return nil, err end
  local events = {}
  for line in f:lines() do
    local ok, ev = pcall(cjson.decode, line)
    if ok and type(ev) == "table" then events[#events + 1] = ev end
  end
  f:close()
  return events
end

return record
