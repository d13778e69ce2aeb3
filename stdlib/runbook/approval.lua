-- runbook.approval: approvals by a second person, and the room's status
-- updates reaching a run (docs/authoring.md: approve, approval =).
--
-- With a room (the config's `room`), approve() writes a `waiting` event
-- and waits, bounded by its timeout and interruptible by Ctrl-C, for a
-- message `runbook approve RUN` wrote to the store; only one from an
-- identity other than the run's own connection's (the store's
-- authenticated one), and one of `from` when it names people, counts.
-- One from the operator's own identity is refused, said so and recorded
-- (`approval.refused`), and the wait goes on.  Without a room the operator
-- types the approver's answer, name and words, recorded attested = true.
-- A dry run says "would wait for approval" and goes on.
--
-- approve() returns the approval {by, text, at, ...}; a rejection raises
-- the "declined" error confirm() raises, so the step ends declined and
-- the operator retries, skips or aborts; a timeout fails the step.
local errors = require("runbook.errors")
local escalation = require("runbook.escalation")
local loop = require("runbook.loop")
local operator = require("runbook.operator")
local room = require("runbook.room")
local ui = require("runbook.ui")

-- The room's inbox (and with it the store, url and networds) is loaded by
-- the first run that has a room: every step's declaration checks its
-- approval here, and a run without a room should not compile the room.
local function inbox() return require("runbook.room_inbox") end

local approval = {}

approval.DEFAULT_TIMEOUT = 1800
-- A store that failed is not tried again at step boundaries for this
-- long: a run never waits on it (room-spec.md).
local RETRY_AFTER = 60
-- The longest single wait on the store, so a failure is retried.
local SLICE = 30

-- A store's failure as said on the screen: "room: ..." once.
local function room_words(err)
  local m = errors.message(err)
  return m:match("^room: ") and m or "room: " .. m
end

-- A wait cut short by Ctrl-C or by the step's own timeout (which bounds
-- every wait in it): not the store failing.
local function cut_short(err)
  return loop.interrupts() > 0 or errors.message(err):find("step's timeout ran out", 1, true) ~= nil
end

local function now_iso()
  return os.date("!%Y-%m-%dT%H:%M:%SZ")
end

-- from = "other" (default) or a non-empty list of identities; returns the
-- list or nil (anyone but the operator), and a usage message on misuse.
function approval.check_from(from, what)
  if from == nil or from == "other" then return nil end
  local ok = type(from) == "table" and #from > 0
  for _, name in ipairs(type(from) == "table" and from or {}) do
    ok = ok and type(name) == "string" and name ~= ""
  end
  if not ok then
    return nil, string.format("%s: from must be \"other\" or a list of names like { \"alice\", \"bob\" }", what)
  end
  return from
end

local function from_text(list)
  if list == nil then return "another person" end
  return table.concat(list, " or ")
end

-- The run's store, connected once (closed when the run ends), or nil
-- when no room is configured.  Raises when the room is malformed or the
-- store cannot be reached.
local function store_of(run)
  if run.room_store then return run.room_store end
  local spec, bad = room.spec(run.config, run.target)
  if bad then error(bad, 0) end
  if spec == nil then return nil end
  local store = inbox().connect(spec)
  run.room_store, run.room_backend = store, spec.backend
  run.cleanup[#run.cleanup + 1] = function()
    if run.room_store then run.room_store:close() end
    run.room_store = nil
  end
  return store
end

-- Whether the run has a room; a malformed one is said (approve() fails
-- on it with the same words).
function approval.has_room(run)
  local spec, bad = room.spec(run.config, run.target)
  if bad then ui.log("warn", "room: " .. bad) end
  return spec ~= nil
end

local function event(run, name, fields)
  fields.step = run.step and run.step.id
  if run.rec then run.rec:event(name, fields) end
end

local function who_text(d)
  return d.by .. ((d.os_user or d.host) and string.format(" (%s@%s)", d.os_user or "?", d.host or "?") or "")
end

-- A status update from the room: shown, sent through notify, recorded.
local function deliver_update(run, m)
  local d = inbox().describe(m)
  if d.text == nil or d.text == "" then return end
  ui.print("  " .. ui.style("cyan", "update from " .. who_text(d) .. ":") .. " " .. d.text)
  local severity = run.plan and run.plan.header and run.plan.header.severity
  local ok, err = pcall(run.verbs.notify, "update from " .. d.by .. ": " .. d.text, { severity = severity })
  if not ok then ui.log("warn", "update: " .. errors.message(err)) end
  event(run, "update", { text = d.text, by = d.by, os_user = d.os_user, host = d.host, at = d.at,
    source = "room" })
end

-- Updates that came since the last look, at a step boundary; a store
-- that fails is said once and left alone for RETRY_AFTER seconds.
function approval.pick_updates(run)
  if run.room_failed and loop.now() - run.room_failed < RETRY_AFTER then return end
  local ok, err = pcall(function()
    local store = store_of(run)
    if store == nil then return end
    local msgs
    msgs, run.room_cursor = store:after(run.rec.run_id, run.room_cursor)
    for _, m in ipairs(msgs) do
      if m.kind == "update" and not m.forged then deliver_update(run, m) end
    end
  end)
  if ok then run.room_failed = nil return end
  if loop.interrupts() > 0 then error(err, 0) end
  if not run.room_failed then ui.log("warn", room_words(err) .. " (updates not read; tried again in a minute)") end
  run.room_failed = loop.now()
end

-- Registers the step-boundary look at the room, when there is one.
function approval.attach(run)
  if run.rec and approval.has_room(run) then
    run.before_step[#run.before_step + 1] = function() approval.pick_updates(run) end
  end
end

-- Why message m does not approve: nil when it does.
local function refusal(m, me, from)
  if m.forged then return "refused: " .. m.forged end
  if m.who == me then
    return string.format("refused: %s is this run's own identity in the room: the operator cannot " ..
      "approve their own run", m.who)
  end
  if from then
    for _, name in ipairs(from) do if name == m.who then return nil end end
    return string.format("refused: %s is not one of the approvers this step names (%s)", m.who,
      table.concat(from, ", "))
  end
end

local function quoted(text)
  return text and text ~= "" and (': "' .. text .. '"') or ""
end

local function rejected(question, by, text, attested)
  local e = errors.declined(question, "approve")
  e.message = string.format("approval rejected by %s%s%s", by, attested and " (attested by the operator)" or "",
    quoted(text))
  return e
end

-- The answer m gives (approve or reject), recorded and shown: the
-- approval, or raises the rejection.
local function answer(run, q, m)
  local d = inbox().describe(m)
  local approved = m.kind == "approve"
  event(run, "approval", { question = q.question, approved = approved, by = d.by, os_user = d.os_user,
    host = d.host, text = d.text, at = d.at, room = run.room_backend, message = m.id })
  ui.print("  " .. ui.style(approved and "green" or "red", (approved and "approved" or "rejected") ..
    " by " .. who_text(d)) .. (d.at and (" at " .. d.at) or "") .. quoted(d.text))
  if not approved then error(rejected(q.question, d.by, d.text), 0) end
  return { approved = true, by = d.by, text = d.text, at = d.at, os_user = d.os_user, host = d.host }
end

-- One message during the wait: an update is delivered; an approval from
-- the wrong identity is refused (said, recorded); the right one answers.
local function consider(run, q, m, me)
  if m.kind == "update" and not m.forged then deliver_update(run, m) return nil end
  if m.kind ~= "approve" and m.kind ~= "reject" then return nil end
  local why = refusal(m, me, q.from)
  if why == nil then return answer(run, q, m) end
  ui.print("  " .. ui.style("yellow", (m.kind == "approve" and "approval" or "rejection") .. " from " ..
    tostring(m.who) .. " " .. why) .. "; still waiting")
  event(run, "approval.refused", { question = q.question, by = m.who, kind = m.kind, reason = why,
    message = m.id })
end

local function timed_out(run, q)
  event(run, "approval", { question = q.question, approved = false, timed_out = q.timeout })
  errors.raise("timeout", string.format("approve: no approval from %s within %s for %q (give one with " ..
    "`runbook approve %s`, then retry the step)", from_text(q.from), ui.duration(q.timeout), q.question,
    run.rec.run_id), { primitive = "approve" })
end

-- One look at the store, bounded by left seconds: an answer, or nil.  A
-- failing store is said once and tried again until the timeout.
local function look(run, q, store, me, left)
  local ok, msgs, cursor = pcall(store.wait, store, run.rec.run_id, run.room_cursor, math.min(left, SLICE))
  if not ok then
    if cut_short(msgs) then error(msgs, 0) end
    if not q.failing then ui.log("warn", room_words(msgs) .. "; still waiting") end
    q.failing = true
    loop.sleep(math.min(1, left))
    return nil
  end
  q.failing = nil
  run.room_cursor = cursor
  for _, m in ipairs(msgs) do
    local got = consider(run, q, m, me)
    if got then return got end
  end
end

local function wait_room(run, q, store)
  local me = store:whoami()
  approval.pick_updates(run)      -- what came before the wait is not an answer to it
  run.room_cursor = run.room_cursor or store:cursor(run.rec.run_id)
  event(run, "waiting", { on = "approval", question = q.question, from = q.from or "other" })
  ui.print("  " .. ui.style("yellow", "waiting for approval from " .. from_text(q.from)) .. ": " .. q.question)
  ui.print(ui.style("dim", string.format("  (runbook approve %s [-m TEXT], or --reject -m TEXT, by an identity " ..
    "other than %s; up to %s; Ctrl-C stops)", run.rec.run_id, me, ui.duration(q.timeout))))
  local started = loop.now()
  local deadline = started + q.timeout
  local ok, got = pcall(function()
    while true do
      local left = deadline - loop.now()
      if left <= 0 then timed_out(run, q) end
      -- past the severity's response time: the escalation channel is told, once
      local until_escalation = escalation.tick(run, "approval", started, { question = q.question })
      if until_escalation then left = math.min(left, math.max(until_escalation, 0.05)) end
      local answered = look(run, q, store, me, left)
      if answered then return answered end
    end
  end)
  if not ok then error(got, 0) end
  return got
end

-- No room: the operator types the approver's answer, name and words.
local function attested(run, q)
  local me = operator.username()
  ui.print("  " .. ui.style("yellow", "no incident room configured:") .. " you (" .. me .. ") attest the " ..
    "approval of " .. from_text(q.from) .. "; it is recorded as attested by the operator")
  local ctx = { answers = run.answers, yes = run.yes, interactive = run.interactive, step = run.step }
  local yes, source = ui.ask { ctx = ctx, question = q.question, confirmation = true,
    prompt = q.question .. " [y/n, as the approver answered] ", parse = ui.parse_yesno }
  local name = ui.ask { ctx = ctx, question = "Approver's name", default = run.yes and me or nil,
    prompt = "Approver's name (who answered): ",
    parse = function(t) t = t:match("^%s*(.-)%s*$") return t ~= "" and t or nil, "a name is needed" end }
  -- Their words are optional: nobody at the terminal means none.
  local wctx = { answers = run.answers, yes = true, interactive = run.interactive, step = run.step }
  if run.interactive then wctx.yes = run.yes end
  local text = ui.ask { ctx = wctx, question = "Approver's words", default = "",
    prompt = "Their words (Enter for none): ", parse = function(t) return t end }
  text = text ~= "" and text or nil
  event(run, "approval", { question = q.question, approved = yes, by = name, text = text, at = now_iso(),
    attested = true, attested_by = me .. "@" .. operator.hostname(), source = source })
  ui.print("  " .. ui.style(yes and "green" or "red", (yes and "approved" or "rejected") .. " by " .. name ..
    " (attested by the operator " .. me .. (source == "yes" and " with --yes: nobody else was asked" or "") ..
    ", not checked by any store)") .. quoted(text))
  if not yes then error(rejected(q.question, name, text, true), 0) end
  return { approved = true, by = name, text = text, attested = true }
end

local function dry(run, q)
  ui.print("  " .. ui.style("magenta", "would wait for approval from " .. from_text(q.from)) .. ": " ..
    q.question .. (approval.has_room(run) and "" or " (no room configured: the operator would attest it)"))
  event(run, "approval", { question = q.question, dry_run = true, from = q.from or "other" })
  return { approved = true, dry_run = true, by = "(dry run: nobody)" }
end

-- approve(question, {from =, timeout =}) for run.
function approval.ask(run, question, opts)
  opts = opts or {}
  if type(opts) ~= "table" then errors.usage("approve: options must be a table { from =, timeout = }", "approve") end
  local from, misuse = approval.check_from(opts.from, "approve")
  if misuse then errors.usage(misuse, "approve") end
  local timeout = opts.timeout or approval.DEFAULT_TIMEOUT
  if type(timeout) ~= "number" or timeout <= 0 then
    errors.usage("approve: timeout must be a positive number of seconds", "approve")
  end
  local q = { question = question, from = from, timeout = timeout }
  if run.dry_run then return dry(run, q) end
  local ok, store = pcall(store_of, run)
  if not ok then
    if loop.interrupts() > 0 then error(store, 0) end
    errors.raise("failed", "approve: " .. errors.message(store), { primitive = "approve" })
  end
  if store == nil then return attested(run, q) end
  return wait_room(run, q, store)
end

-- The approval a step with `approval =` waits for before it runs; once
-- given, it holds for the step's retries in this run.
function approval.for_step(run, step)
  run.approved = run.approved or {}
  if run.approved[step.id] then return end
  approval.ask(run, string.format("Approve step %d '%s'?", step.index, step.title),
    { from = step.approval ~= "other" and step.approval or nil, timeout = step.approval_timeout })
  run.approved[step.id] = true
end

return approval
