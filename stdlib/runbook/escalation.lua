-- runbook.escalation: a run that waits on a person longer than its
-- severity's response time (the config's `respond = { P0 = "15m", P1 =
-- "15m", P2 = "1h" }`, these the defaults; P3 and a run without a severity
-- never escalate) tells the escalation channel (`escalation = "pager"` in
-- the config; else every notify channel), once per wait, recorded as an
-- `escalation` event.
--
-- A wait calls escalation.tick(run, on, started_at[, opts]) now and then:
--   on          "operator" (a question on the terminal) or "approval"
--   started_at  loop.now() when the wait began: it names the wait, so a
--               wait escalates once however often it ticks
--   opts        { question = what is waited for, prefix = text written
--               before the escalation goes out ("\n" ends a prompt's line) }
-- It returns the seconds until the wait would escalate (the caller sleeps
-- that long, or less, and ticks again), or nil once it has escalated or
-- when it never will.  The operator's questions tick through ui.on_wait,
-- which runbook.cadence points at operator_wait (loading this module at
-- the first question that waits): the question's read times out at the
-- response time, the escalation goes out, and the read goes on, the
-- operator's typing kept.  An approval wait (runbook.approve) ticks too.
local cadence = require("runbook.cadence")
local context = require("runbook.context")
local duration = require("runbook.duration")
local loop = require("runbook.loop")
local templates = require("runbook.templates")
local ui = require("runbook.ui")

local escalation = {}

escalation.DEFAULTS = { P0 = "15m", P1 = "15m", P2 = "1h" }

local WHAT = { operator = "the operator", approval = "an approval" }

-- The response time at level, in seconds, or nil.
function escalation.respond(run, level)
  return duration.at_level(run.config and run.config.respond, escalation.DEFAULTS, level)
end

local function send(run, on, waited, level, limit, opts)
  local values = cadence.values(run, run.step)
  values.Waited, values.Respond = duration.text(waited), duration.text(limit)
  values["Waiting On"] = WHAT[on] or on
  values.Question = opts.question or "(not said)"
  values.Step = run.step and string.format("%d '%s'", run.step.index, run.step.title) or "(between steps)"
  local text = templates.fill(templates.get(run, "escalation"), values)
  local channel = run.config and run.config.escalation
  -- (the prefix ends the prompt's line before notify says where it sent)
  if opts.prefix then require("runbook.operator").write(opts.prefix) end
  local ok, err = pcall(require("runbook.prim.notify"), text, { severity = level, channel = channel,
    quiet = true })
  run.rec:event("escalation", { waited = waited, on = on, channel = channel, severity = level,
    step = run.step and run.step.id, sent = ok or nil, error = not ok and tostring(err) or nil })
  ui.print("  " .. ui.style("yellow", "escalated:") .. string.format(
    " waited %s for %s, past the %s response time (%s); %s %s", values.Waited, values["Waiting On"], level,
    values.Respond, ok and "notified" or "could not notify", channel or "every channel"))
end

-- The seconds the wait has left before it escalates (0 or less: now), and
-- its level and response time; nil once it escalated, or when it never will.
local function left(run, on, started_at)
  local level = cadence.level(run)
  local limit = escalation.respond(run, level)
  if limit == nil or run.phase ~= "execute" or run.rec == nil then return nil end
  if run.escalated and run.escalated[on .. "@" .. started_at] then return nil end
  return limit - (loop.now() - started_at), level, limit
end

function escalation.tick(run, on, started_at, opts)
  local secs, level, limit = left(run, on, started_at)
  if secs == nil or secs > 0 then return secs end
  run.escalated = run.escalated or {}
  run.escalated[on .. "@" .. started_at] = true
  send(run, on, limit - secs, level, limit, opts or {})
  return nil
end

-- ui.on_wait: a question is about to wait for the operator's answer on the
-- terminal.  Records the `waiting` event (what the room shows as "waiting
-- for the operator") and returns the wait's {timeout(), tick(), done()},
-- or nil outside a run's steps.
function escalation.operator_wait(question)
  local run = context.run()
  if run == nil or run.phase ~= "execute" or run.rec == nil then return nil end
  local started = loop.now()
  run.rec:event("waiting", { on = "operator", question = question, step = run.step and run.step.id })
  local wait = {}
  -- (the read's timeout only: the escalation goes out in tick, after the
  -- prompt is on the screen, however late this is asked)
  function wait.timeout()
    local secs = left(run, "operator", started)
    return secs and math.max(secs, 0.001)
  end
  -- Whether the escalation went out now (a line was printed).
  function wait.tick()
    if left(run, "operator", started) == nil then return false end
    escalation.tick(run, "operator", started, { question = question, prefix = "\n" })
    return left(run, "operator", started) == nil
  end
  function wait.done() if run.asking == wait then run.asking = nil end end
  run.asking = wait
  return wait
end

return escalation
