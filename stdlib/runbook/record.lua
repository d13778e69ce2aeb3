-- runbook.record: events into the transcript.
--
-- A run's events pass through here to the C writer, which in one call
-- encodes the fields (src/transcript_encode.c: every string redacted,
-- credential members hidden, long strings cut, bytes that are not UTF-8
-- escaped), then chains and appends the line (src/transcript.c).  cjson
-- only decodes, when a transcript is read back.
local cjson = require("cjson")
local redact = require("runbook.redact")
local transcript = require("runbook.transcript")
local sys = require("runbook.sys")

local record = {}


record.MIN_SECRET = 4
record.MAX_SECRET_LINES = 50000
record.MAX_SECRET_VALUES = 100000
local function hunt(s)
  if #s >= record.MIN_SECRET then redact.secret(s) end
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
-- MAX_SECRET_LINES lines are marked one by one: the redactor's index makes
-- neither adding a secret nor a later redaction cost more with the number
-- held, but marking runs in one go with the event loop waiting, at about
-- 5 us a line here (50,000 lines of a 2.5 MB output: 0.2 s on top of the
-- 0.3 s the whole value's own marking takes).
-- s without leading and trailing white space: a find and a walk back from
-- the end, cheaper than "^%s*(.-)%s*$" on a megabyte (which tries the
-- trailing pattern at every byte).
local SPACE = { [9] = true, [10] = true, [11] = true, [12] = true, [13] = true, [32] = true }
local function trim(s)
  local a = s:find("%S")
  if a == nil then return "" end
  local b = #s
  while SPACE[s:byte(b)] do b = b - 1 end
  if a == 1 and b == #s then return s end
  return s:sub(a, b)
end

function record.secret(value)
  value = tostring(value)
  hunt(value)
  hunt(trim(value))
  if value:find("\n", 1, true) then
    hunt((value:gsub("\r?\n$", "")))
    local n = 0
    for line in value:gmatch("[^\n]+") do
      n = n + 1
      if n > record.MAX_SECRET_LINES then break end
      hunt(line)
      local trimmed = trim(line)
      if trimmed ~= line then hunt(trimmed) end
    end
  end
  return value
end

-- Mark every string and number in v (a reply, rows, decoded JSON) as
-- secret, the first MAX_SECRET_VALUES of them (as for lines above, the
-- bound is the time marking holds the loop: 100,000 values took 0.4 s
-- here; a secret query is for credentials, not a table's every row);
-- returns v.
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
    local dir = record.default_dir()    -- made, 0700, when missing (src/transcript.c)
    local safe = (name or "run"):gsub("[^%w%-_.]", "_")
    path = string.format("%s/%s-%s.jsonl", dir, safe, run_id)
  end
  local ok, writer = pcall(transcript.open, path, run_id)
  if not ok then return nil, writer end
  return setmetatable({ writer = writer, run_id = run_id, path = path }, { __index = record })
end

-- A transcript that cannot be written (a full disk, an I/O error): the
-- run must stop, since what it does next would not be recorded.  Raised as
-- this object so the CLI tells it from a bug and prints no traceback.
record.WriteError = {}
record.WriteError.__index = record.WriteError
record.WriteError.__tostring = function(e) return e.message end

local function write_error(self, what, err)
  local cause = tostring(err):gsub("^transcript: ", ""):gsub("^write failed: ", "")
  return setmetatable({ path = self.path, what = what, cause = cause, lines = self.writer:seq(),
    message = string.format("transcript %s: cannot write %s: %s", self.path, what, cause) },
    record.WriteError)
end

-- Once a write failed, nothing more is written: a later event landing
-- after a lost one would leave a gap that verify cannot see.  Fields that
-- cannot be encoded (a bad table) raise as they are: that is no write error.
function record:event(event, fields)
  if self.failed then error(self.failed, 0) end
  -- The room's summary goes first: the line may be published the moment
  -- it is written, and the summary with it.
  if self.room then self.room:before(event, fields) end
  local ok, err, too_long = self.writer:event(event, fields)
  if ok then
    if self.room then self.room:after(self) end
    return
  end
  if too_long then
    -- Too long for one line: record that it was, rather than lose the run.
    ok, err = self.writer:event(event, { cut =
      "event too long for one transcript line (16 MiB); its fields were dropped" })
    if ok then return end
  end
  self.failed = write_error(self, "the " .. event .. " event", err)
  error(self.failed, 0)
end

function record:sync()
  if self.failed then error(self.failed, 0) end
  local ok, err = pcall(self.writer.sync, self.writer)
  if not ok then
    self.failed = write_error(self, "(fsync)", err)
    error(self.failed, 0)
  end
  self.owed = nil
end

-- A line nothing has acted on yet (run.start and the params, the last
-- step's end): its fsync is owed, not done, as the next one covers it (a
-- step's end, run.end; a one-step run's fsyncs cost about a quarter of
-- it).  Whatever acts first settles it: a primitive's call (api.call),
-- the run's cleanup (engine.finish); and the writer does it just before
-- the event loop next blocks (rb_transcript_owe), so no question, sleep
-- or wait starts with a line that is not on disk.
function record:owe_sync()
  self.owed = true
  self.writer:owe()
end

function record:settle()
  if self.owed then self:sync() end
end

-- After a write failure: one last try at run.end, so a record whose disk
-- got space back says how it ended.  Returns whether it was written.
function record:try_end(fields)
  if not self.writer:event("run.end", fields) then return false end
  return pcall(self.writer.sync, self.writer)
end

function record:hash()
  return self.writer:hash()
end

function record:close()
  if self.room then self.room:close(self) end
  self.writer:close()
end

-- Read a transcript back (for --resume, report), checking its chain in
-- the same pass: a FIFO or /dev/stdin gives its lines only once.  Returns
-- the events, one per line (events[n] is line n), whether the chain is
-- intact and the verify result.  Raises "FILE:LINE: what is wrong" for a
-- file that cannot be read, a line over the bound, a file over
-- RB_TRANSCRIPT_READ_MAX or a line that is not a JSON object.
function record.read(path)
  local ok, res, lines = transcript.verify(path, { lines = true })
  if ok == nil then error(res.reason, 0) end
  local events = {}
  for n, line in ipairs(lines) do
    local okd, ev = pcall(cjson.decode, line)
    if not okd or type(ev) ~= "table" then
      error(string.format("%s:%d: not a JSON object (not a runbook transcript?)%s", path, n,
        okd and "" or (": " .. tostring(ev))), 0)
    end
    events[n] = ev
  end
  return events, ok, res
end

return record
