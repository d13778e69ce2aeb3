-- runbook.record: events into the transcript.
--
-- A run's events pass through here: values are made JSON-safe, every string
-- is redacted (secret params and prompts, secret() values, URL passwords),
-- then cjson encodes the fields and the C writer chains and appends the line.
local cjson = require("cjson")
local transcript = require("runbook.transcript")
local sys = require("runbook.sys")

local record = {}


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

-- Encode a fields table as the members of a JSON object (no braces): in C
-- (src/transcript_encode.c), redacting every string value, hiding
-- credential members and cutting long strings on the way.
record.encode = transcript.encode

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
