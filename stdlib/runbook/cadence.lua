-- runbook.cadence: status updates on the incident's cadence.
--
-- A run has a severity when its runbook's header says so (`severity =
-- "P1"`) or once a `severity` event declares one (incident.confirm,
-- incident.declare: prim/severity.lua tells cadence.declared); a later
-- event changes it (a failure raises P2 to P1).  While it goes on, an
-- update is due every `cadence[level]` of the config (P0 15m, P1 30m, P2
-- 4h; P3 none) after the last one (or the start of the run):
--
--   * at a step boundary the operator is offered the update template,
--     filled from the transcript, to send as it is, edit or snooze;
--   * during a long step, a watcher beside the step shows the line "update
--     due" when the time comes (the offer follows at the step's end: the
--     keyboard belongs to the step, which may be asking something itself);
--     a run with nobody at the keyboard sends it then and there.
--
-- Every reminder is a `reminder` event (action sent, edited, snoozed, or
-- shown for the line during a step); every update sent is an `update`
-- event and goes through notify.  The question is always "Status update
-- due", so an answers file answers it (`[*] Status update due = send`,
-- `= snooze 10m`, `= edit` and then `[*] Status update text = ...`).  With
-- no answer and nobody at the keyboard (--yes, or stdin not a terminal)
-- the update is sent as it is: the people waiting for it are owed it
-- whether or not someone watches the run.  A dry run shows "would send the
-- update" and notify sends nothing.
--
-- With `announce = true` in the config, the run also sends the initial
-- alert when its severity is declared (and again when it is raised), and
-- the resolution when a run that sent one ends done.
local cjson = require("cjson")
local context = require("runbook.context")
local duration = require("runbook.duration")
local loop = require("runbook.loop")
local operator = require("runbook.operator")
local ui = require("runbook.ui")
-- runbook.templates and runbook.escalation are loaded when a message is
-- sent and when a question first waits: a run that does neither (most)
-- does not load them.
local lazy = require("runbook.lazy")
local templates = lazy("runbook.templates")
local escalation = lazy("runbook.escalation")

local cadence = {}

cadence.DEFAULTS = { P0 = "15m", P1 = "30m", P2 = "4h" }
cadence.QUESTION = "Status update due"
cadence.TEXT_QUESTION = "Status update text"
cadence.SNOOZE = 300           -- seconds; never more than the cadence itself

-- The run's severity now, or nil.
function cadence.level(run)
  return run.severity or (run.plan and run.plan.header and run.plan.header.severity)
end

-- Seconds between updates at level, or nil (P3, or no severity).
function cadence.interval(run, level)
  return duration.at_level(run.config and run.config.cadence, cadence.DEFAULTS, level)
end

function cadence.who()
  return operator.username() .. "@" .. operator.hostname()
end

-- What the transcript holds since the last update: the steps that ended
-- and the commands run.  It is read on from where the last look stopped,
-- so each line is read once however long the run.  (The transcript is a
-- regular file: the writer creates it, never opens what exists.)
local function read_on(run, st)
  local path = run.rec and run.rec.path
  local f = path and io.open(path, "r")
  if not f then return end
  f:seek("set", st.offset)
  for line in f:lines() do
    local ok, ev = pcall(cjson.decode, line)
    if ok and type(ev) == "table" then
      if ev.event == "step.end" and ev.reason == nil then
        local s = run.plan.steps[ev.index]
        st.steps[#st.steps + 1] = string.format("%s (%s)", s and s.title or tostring(ev.id), ev.status)
      elseif ev.event == "call" and type(ev.args) == "table" and ev.args.argv then
        st.commands[#st.commands + 1] = table.concat(ev.args.argv, " ")
      end
    end
  end
  st.offset = f:seek("end")
  f:close()
end

local function since_text(st)
  local parts = {}
  if #st.steps > 0 then parts[1] = "steps finished: " .. table.concat(st.steps, ", ") end
  local n = #st.commands
  if n > 0 then
    local shown = {}
    for i = math.max(1, n - 2), n do shown[#shown + 1] = st.commands[i] end
    parts[#parts + 1] = string.format("%d command%s run (%s%s)", n, n == 1 and "" or "s",
      n > 3 and "last: " or "", table.concat(shown, "; "))
  end
  return #parts > 0 and table.concat(parts, "; ") or "no step finished and no command run"
end

-- The [Placeholder] values of the run's messages.  next_step: the step
-- about to start (at a boundary) or the one under way.
function cadence.values(run, next_step)
  local st, plan = run.cadence, run.plan
  read_on(run, st)
  local level = cadence.level(run)
  local n, done = #plan.steps, 0
  for _, s in ipairs(plan.steps) do if next_step and s.index < next_step.index then done = done + 1 end end
  local params, target = run.params or {}, run.target or {}
  local interval = cadence.interval(run, level)
  local upcoming = next_step
  if next_step and run.step == next_step then upcoming = plan.steps[next_step.index + 1] end
  local values = {
    ["Service Name"] = params.service or target.service or plan.header.title or plan.name,
    Severity = level, Runbook = plan.name, Summary = plan.header.title or plan.name,
    Target = target.name or "(no target)", Lead = cadence.who(), Run = run.rec and run.rec.run_id,
    Status = next_step and string.format("%d of %d steps done, step %d '%s' %s", done, n, next_step.index,
      next_step.title, run.step == next_step and "under way" or "next") or
      (st.ended and st.ended ~= "done" and ("the run ended " .. st.ended)) or
      string.format("all %d steps done", n),
    ["Since Last Update"] = since_text(st),
    ["Next Step"] = upcoming and upcoming.title or
      (st.ended and st.ended ~= "done" and "(none: the run ended " .. st.ended .. ")") or
      "(none: the runbook is at its end)",
    Duration = duration.text(loop.now() - st.started), Started = st.started_utc,
    Cadence = interval and duration.text(interval) or "(no cadence)",
  }
  values["Start Time"] = values.Started
  -- the answers given so far ("Incident lead" fills [Incident Lead]); the
  -- run's own values win over a question's
  for question, answer in pairs(run.answered or {}) do
    local name = question:gsub("[:?%s]+$", "")
    if values[name] == nil then values[name] = answer end
  end
  return values
end

-- Send text through notify as an `update` event (the room's `runbook
-- update` records source = "room").  Returns whether a channel took it.
function cadence.send(run, text, level, source)
  if run.dry_run then ui.print("  " .. ui.style("magenta", "would send the update") .. ": " .. text) end
  local ok, results = pcall(require("runbook.prim.notify"), text, { severity = level })
  if not ok then ui.log("warn", "update not sent: " .. tostring(results)) end
  local took = false
  for _, r in ipairs(ok and results or {}) do took = took or r.ok end
  run.rec:event("update", { text = text, by = cadence.who(), source = source or "operator",
    step = run.step and run.step.id, dry_run = run.dry_run or nil, sent = took })
  local st = run.cadence
  st.last, st.snoozed_until, st.steps, st.commands = loop.now(), nil, {}, {}
  return took
end

-- The level and interval of an update due now, or nil (and the seconds
-- until one is, when the run has a cadence).
function cadence.due(run)
  local st = run.cadence
  local level = cadence.level(run)
  local interval = cadence.interval(run, level)
  if st == nil or interval == nil then return nil end
  local at = math.max(st.last + interval, st.snoozed_until or 0)
  local now = loop.now()
  if now < at then return nil, at - now end
  return level, interval
end

-- The reminder's answer: "send", "edit", or "snooze" and its seconds.
local function parse_answer(text)
  local t = text:lower():match("^%s*(.-)%s*$")
  if t == "" or t == "s" or t == "send" then return { "send" } end
  if t == "e" or t == "edit" then return { "edit" } end
  local rest = t:match("^snooze%s*(.*)$") or t:match("^z%s*(.*)$")
  if rest then
    if rest == "" then return { "snooze" } end
    local secs, why = duration.parse(rest)
    if secs then return { "snooze", secs } end
    return nil, "snooze for how long? " .. why
  end
  return nil, "answer send (Enter), edit, or snooze [DURATION]"
end

-- Who answers a reminder: the answers file, else the operator; with nobody
-- at the keyboard (--yes, or no terminal) the default, send.
local function reminder_ctx(run)
  return { answers = run.answers, yes = run.yes or not run.interactive, interactive = run.interactive,
    step = run.step }
end

-- ui.ask for a reminder, which must not end the run: Ctrl-C at it (or a
-- terminating signal, which the engine then sees) gives on_interrupt, an
-- answers file's answer that does not parse gives on_error, with a warning.
local function ask(run, q, on_interrupt, on_error)
  local ok, value, source = pcall(ui.ask, q)
  if ok then return value, source end
  if loop.interrupts() > 0 then
    if not loop.terminated() then loop.ack_interrupt() end
    ui.print("")
    return on_interrupt, "interrupt"
  end
  ui.log("warn", "reminder: " .. tostring(value) .. "; the default is taken")
  return on_error, run.answers and "answers" or "default"
end

-- Offer the update due: send, edit or snooze; recorded either way.
function cadence.remind(run, level, interval, next_step)
  local st = run.cadence
  local text = templates.fill(templates.get(run, "update"), cadence.values(run, next_step))
  ui.print(ui.style("yellow", "  update due") .. string.format(" (%s: every %s, last %s ago):",
    level, duration.text(interval), duration.text(loop.now() - st.last)))
  ui.print("    " .. text)
  local ctx = reminder_ctx(run)
  local answer, source = ask(run, { ctx = ctx, question = cadence.QUESTION, default = "send",
    prompt = cadence.QUESTION .. ": send (Enter), edit, or snooze [DURATION]? ", parse = parse_answer },
    { "snooze" }, { "send" })
  local due = level .. " update"
  if answer[1] == "snooze" then
    local secs = answer[2] or math.min(cadence.SNOOZE, interval)
    st.snoozed_until = loop.now() + secs
    ui.print("  snoozed: reminding again in " .. duration.text(secs))
    run.rec:event("reminder", { due = due, action = "snoozed", snooze = secs, source = source,
      step = run.step and run.step.id })
    return
  end
  local action = "sent"
  if answer[1] == "edit" then
    action = "edited"
    local shown = text
    text = ask(run, { ctx = ctx, question = cadence.TEXT_QUESTION, default = text,
      prompt = cadence.TEXT_QUESTION .. " (Enter keeps it as shown): ",
      parse = function(t) return t:match("%S") and t or nil, "the update needs some text" end }, shown, shown)
  end
  run.rec:event("reminder", { due = due, action = action, source = source, step = run.step and run.step.id })
  cadence.send(run, text, level, "operator")
end

-- At a step boundary (before `step` starts, or at the run's end with nil);
-- not once a terminating signal came: the run is ending, nobody answers.
function cadence.boundary(run, step)
  if loop.terminated() then return end
  local level, interval = cadence.due(run)
  if level then cadence.remind(run, level, interval, step) end
end

-- The line shown during a long step when the update falls due, once per
-- due time; with nobody at the keyboard the update goes out at once.
local function during_step(run, step, level, interval)
  local st = run.cadence
  if not run.interactive or run.yes then return cadence.remind(run, level, interval, step) end
  if st.shown == st.last and st.shown_snooze == st.snoozed_until then return end
  st.shown, st.shown_snooze = st.last, st.snoozed_until
  ui.print(ui.style("yellow", "  update due") .. string.format(" (%s: every %s, last %s ago): " ..
    "offered when this step ends", level, duration.text(interval), duration.text(loop.now() - st.last)))
  run.rec:event("reminder", { due = level .. " update", action = "shown", step = step.id })
end

-- The watcher beside a step (a detached task: no join waits for it; it
-- ends with the step).  It sleeps until the update is due; without a
-- severity yet it looks again now and then, as one may be declared.  A
-- question under way (the step asking the operator) holds the line back.
local function watch(run, step)
  context.bind(run)
  while true do
    local level, interval_or_wait = cadence.due(run)
    local wait = interval_or_wait or 60
    if level and not run.asking then
      local ok = pcall(during_step, run, step, level, interval_or_wait)
      if not ok then return end
      wait = 1
    elseif level then
      wait = 1
    end
    if not pcall(loop.sleep, math.min(wait, 60)) then return end
  end
end

-- The alert or resolution, when the config says `announce = true`.
local function announce(run, kind, next_step)
  if not (run.config and run.config.announce) then return end
  local text = templates.fill(templates.get(run, kind), cadence.values(run, next_step))
  local ok, err = pcall(require("runbook.prim.notify"), text, { severity = cadence.level(run) })
  if not ok then ui.log("warn", kind .. " not sent: " .. tostring(err)) end
  run.cadence.alerted = run.cadence.alerted or kind == "alert"
end

-- A severity event (prim/severity.lua): the run's level from now on.  A
-- proposal is not a declaration.  The first level of a run without one
-- starts its clock; each new level is announced.
function cadence.declared(run, level, action)
  if action == "proposed" then return end
  local before = cadence.level(run)
  run.severity = level
  local st = run.cadence
  if st == nil then return end
  if before == nil then st.last = loop.now() end
  if level ~= before or action == "declared" then announce(run, "alert", run.step) end
end

-- Start the cadence of a run about to execute its steps from `first`
-- (engine.execute): its clock, the watcher beside every step, and the
-- alert of a runbook whose header declares its severity.
function cadence.start(run, first)
  run.cadence = { started = loop.now(), started_utc = os.date("!%Y-%m-%d %H:%M UTC"), last = loop.now(),
    offset = 0, steps = {}, commands = {} }
  run.before_step[#run.before_step + 1] = function(step) loop.detach(watch, run, step) end
  ui.on_wait = function(question) return escalation.operator_wait(question) end
  if cadence.level(run) then announce(run, "alert", run.plan.steps[first]) end
end

-- The run's end (still in its execute phase, so notify may send): the
-- resolution of a run that announced its alert and ended done; else the
-- update due, if one is, unless Ctrl-C or a signal ended the run.
function cadence.finish(run, status)
  if run.cadence == nil then return end
  run.cadence.ended = status       -- an update after an abort says so, not "all steps done"
  if run.cadence.alerted and status == "done" then return announce(run, "resolved", nil) end
  if status ~= "interrupted" and status ~= "terminated" then cadence.boundary(run, nil) end
end

return cadence
