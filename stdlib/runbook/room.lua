-- runbook.room: the incident room's shared store (docs/room.md).
--
--   room.spec(config, target) -> spec | nil [, why]   the target's room, else
--       the config's: { backend = "postgres" | "redis", url, heartbeat, flush }
--   room.attach(rec, spec)   publish every line rec writes from now on
--       (src/lib_roompub.c's thread); rec:event calls rec.room:before(...)
--       and rec.room:after(rec) around each line, rec:close() rec.room:close()
--   room.connect(spec) -> store   for runs and watch: store:whoami(),
--       store:runs(), store:lines(run, after), store:wait(run, seconds),
--       store:close()  (stdlib/runbook/roomstore.lua)
--
-- The run's summary (runbook, target, operator, host, step, state) is
-- worked out here from the events as they are written and handed to the
-- publisher, which stores it with the next lines: the state `runs` shows
-- is the one the run itself knew.
local config = require("runbook.config")
local redact = require("runbook.redact")
local ui = require("runbook.ui")

local room = {}

local BACKENDS = { postgres = true, redis = true }

-- How long the end of a run waits for the store to take its last lines.
room.FLUSH = 3

local function number_opt(s, key, default)
  local v = s[key]
  if v == nil then return default end
  if type(v) ~= "number" or v <= 0 then
    error(string.format("room.%s must be a positive number of seconds", key), 0)
  end
  return v
end

local function check_spec(s)
  if type(s) ~= "table" then error("room: expected a table { backend = ..., url = ... }", 0) end
  if not BACKENDS[s.backend] then
    error(string.format('room.backend must be "postgres" or "redis" (got %s)', tostring(s.backend)), 0)
  end
  local url = s.url          -- an unset env() raises here, naming the variable
  if type(url) ~= "string" or url == "" then
    error("room.url must be the store's URL (e.g. url = env(\"RUNBOOK_ROOM_URL\"))", 0)
  end
  return { backend = s.backend, url = url, heartbeat = number_opt(s, "heartbeat", 5),
    flush = number_opt(s, "flush", room.FLUSH) }
end

function room.spec(cfg, target)
  local s = config.room_of(cfg, target)
  if s == nil then return nil end
  local ok, spec = pcall(check_spec, s)
  if not ok then return nil, tostring(spec) end
  return spec
end

-- The publisher's connection options from the spec's URL.
local function publish_options(spec, run_id)
  local opts = { backend = spec.backend, run = run_id, heartbeat = spec.heartbeat }
  if spec.backend == "postgres" then
    opts.url = spec.url
    return opts
  end
  local cfg, why = require("runbook.url").redis(spec.url)
  if not cfg then error(string.format("room.url: %s in %s", why, redact.redact(spec.url)), 0) end
  opts.host, opts.port, opts.db = cfg.host, cfg.port, cfg.db
  opts.user, opts.password = cfg.user, cfg.password
  return opts
end

-- Run states, from run.end's status.
local FINAL = { done = "done", failed = "failed", error = "failed", transcript_failed = "failed",
  aborted = "aborted", interrupted = "aborted", terminated = "terminated" }
-- Events that end a wait on a person (their answer), or show the run moving.
local ANSWERS = { confirm = true, prompt = true, manual = true, approval = true,
  ["step.start"] = true, ["step.end"] = true }

-- A run that ends "aborted" right after a step failed (--yes, or the
-- operator's abort after the error) is shown failed; after a declined step
-- or a Ctrl-C it stays aborted.
local function summary_of(self, event, f)
  if event == "step.end" then self.last_step = f.status end
  if event == "run.end" and f.status == "aborted" and self.last_step == "failed" then
    return { state = "failed" }
  end
  if event == "run.start" then
    return { runbook = f.runbook, target = f.target or false, operator = f.operator,
      host = f.host, started = os.date("!%Y-%m-%dT%H:%M:%SZ"), state = "running" }
  elseif event == "step.start" then
    return { step = f.title, state = "running" }
  elseif event == "waiting" then
    return { state = f.on == "approval" and "waiting for approval" or "waiting for the operator" }
  elseif event == "run.end" then
    return { state = FINAL[f.status] or tostring(f.status) }
  elseif ANSWERS[event] then
    return { state = "running" }
  end
end

local Publisher = {}
Publisher.__index = Publisher

-- What the publisher found (the store went away, came back): one line to
-- the operator and a `room` event, once per change.
function Publisher:tell(rec)
  if self.telling then return end
  self.telling = true
  local kind, text = self.pub:news()
  while kind do
    if kind == "refused" then
      ui.eprint(ui.style("yellow", "room: ") .. string.format("the store refused the login (%s): check " ..
        "room.url's user and password; the run goes on, and its lines are published only if a later " ..
        "login (every 30 s) is accepted", text))
      rec:event("room", { state = "unreachable", error = text })
    elseif kind == "down" then
      ui.eprint(ui.style("yellow", "room: ") .. string.format("the store is unreachable (%s); " ..
        "the run goes on, and its lines are published when the store is back", text))
      rec:event("room", { state = "unreachable", error = text })
    else
      ui.eprint(ui.style("yellow", "room: ") .. string.format("the store is back; " ..
        "publishing the %s line(s) it missed", text))
      rec:event("room", { state = "back", missed = tonumber(text) })
    end
    kind, text = self.pub:news()
  end
  self.telling = false
end

-- Before an event is written: the summary it makes (the line and its
-- summary then go out together).
function Publisher:before(event, fields)
  local s = summary_of(self, event, fields or {})
  if s then
    for k, v in pairs(s) do
      if type(v) == "string" then s[k] = redact.redact(v) end
    end
    self.pub:note(s)
  end
end

-- After it is written: what the publisher has to say.
function Publisher:after(rec)
  self:tell(rec)
end

-- After run.end: wait (a few seconds at most) for the store to take the
-- last lines, then say what it does not have.
function Publisher:close(rec)
  if self.closed then return end
  self.closed = true
  local published, written, why = self.pub:finish(self.spec.flush)
  if published < written then
    ui.eprint(ui.style("yellow", "room: ") .. string.format("%d of %d line(s) were not published " ..
      "(the store is unreachable%s); the transcript %s holds every line", written - published,
      written, why ~= "" and (": " .. why) or "", rec.path))
  end
end

function room.attach(rec, spec)
  local opts = publish_options(spec, rec.run_id)
  local pub = require("runbook.roompub").start(rec.writer, opts)
  rec.room = setmetatable({ pub = pub, spec = spec }, Publisher)
  return rec.room
end

function room.connect(spec)
  return require("runbook.roomstore").connect(spec)
end

return room
