-- runbook.record: events into the transcript.
--
-- A run's events pass through here: values are made JSON-safe, every string
-- is redacted (secret params and prompts, secret() values, URL passwords),
-- then cjson encodes the fields and the C writer chains and appends the line.
local cjson = require("cjson")
local transcript = require("runbook.transcript")
local sys = require("runbook.sys")

local record = {}


record.MIN_SECRET = 4
record.MAX_SECRET_LINES = 4000
record.MAX_SECRET_VALUES = 10000
local function hunt(s)
  if #s >= record.MIN_SECRET then transcript.secret(s) end
end

-- Mark a value as secret: from now on it is shown as *** on screen and in
-- the transcript.  Values under 4 characters are not hunted as substrings
-- (a 1-letter "secret" would blank every such letter of the record); the
-- places that know a value is secret (secret params, secret prompts)
-- record "***" for it whatever its length.  The value is also marked
-- without its surrounding blanks, and a multi-line one without its
-- trailing newline and line by line (each line as it is and trimmed):
-- output is shown one line at a time, and `cat` of a one-line file ends
-- in a newline the runbook trims before using the value.  Only the first
-- MAX_SECRET_LINES lines are marked one by one: each secret costs a search
-- in every string recorded or shown afterwards, and adding one costs a
-- pass over those already held (20,000 lines took 3 s to mark here).
function record.secret(value)
  value = tostring(value)
  hunt(value)
  hunt(value:match("^%s*(.-)%s*$"))
  if value:find("\n", 1, true) then
    hunt((value:gsub("\r?\n$", "")))
    local n = 0
    for line in value:gmatch("[^\n]+") do
      n = n + 1
      if n > record.MAX_SECRET_LINES then break end
      hunt(line)
      local trimmed = line:match("^%s*(.-)%s*$")
      if trimmed ~= line then hunt(trimmed) end
    end
  end
  return value
end

-- Mark every string and number in v (a reply, rows, decoded JSON) as
-- secret, the first MAX_SECRET_VALUES of them (as for lines above: a
-- secret query is for credentials, not for a table's every row); returns v.
function record.secret_values(v)
  local left = record.MAX_SECRET_VALUES
  local function walk(x)
    local t = type(x)
    if left <= 0 then return end
    if t == "string" or t == "number" then
      left = left - 1
      record.secret(x)
    elseif t == "table" then
      for _, y in pairs(x) do walk(y) end
    end
  end
  walk(v)
  return v
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
