-- runbook.engine: declare, bind, execute (DESIGN.md, "How a run flows").
--
-- The engine is policy, so it is Lua (STYLE.md): C gives it tasks on the
-- event loop (runbook.loop), the transcript writer and the operator's
-- keyboard; everything about steps, failures and answers is decided here.
local api = require("runbook.api")
local cadence = require("runbook.cadence")
local context = require("runbook.context")
local errors = require("runbook.errors")
local loop = require("runbook.loop")
local operator = require("runbook.operator")
local requires = require("runbook.requires")
local run_state = require("runbook.state")
local transcript = require("runbook.transcript")
local ui = require("runbook.ui")

local engine = {}

-- A load or binding problem: exit 2 with this message.
engine.UsageError = {}
engine.UsageError.__tostring = function(e) return e.message end
local function usage_error(fmt, ...)
  error(setmetatable({ message = string.format(fmt, ...) }, engine.UsageError), 0)
end
engine.usage_error = usage_error

-- A run: its plan, its bound params, its transcript; `cleanup`, a list of
-- functions called once when the run ends (primitives register the closing
-- of their cached connections there); and `before_step`, functions called
-- with the step at the start of every attempt, inside its task (the team
-- lock checks it is still held there); `state`, the table the runbook
-- names `state` (runbook.state records and restores it).  The new run is
-- the current one (runbook.context) from now on.
function engine.new_run(fields)
  local run = { phase = "declare", plan = { params = {}, param_list = {}, steps = {} }, cleanup = {},
    before_step = {}, state = {} }
  for k, v in pairs(fields or {}) do run[k] = v end
  context.enter(run)
  return run
end

-- Call the run's cleanup functions (last registered first); errors are
-- reported, not raised, so every one of them runs.  Interrupts still
-- pending (the second Ctrl-C, the signal that ended the run) were meant for
-- the run, not for its cleanup: forgotten first, so releasing a lock can
-- still talk to its server; and a SIGTERM or SIGHUP that comes now is only
-- recorded (each cleanup call has its own timeout).  A Ctrl-C pressed
-- during the cleanup still interrupts it.
function engine.finish(run)
  -- the cleanup acts (closes, releases): the last step's end on disk
  -- first.  An fsync that fails leaves rec.failed set, and the run.end
  -- after the cleanup reports it as any write error.
  if run.rec and #run.cleanup > 0 then pcall(run.rec.settle, run.rec) end
  loop.shield(true)
  if loop.interrupts() > 0 then loop.ack_interrupt() end
  for i = #run.cleanup, 1, -1 do
    local ok, err = pcall(run.cleanup[i])
    if not ok then ui.eprint("runbook: cleanup: " .. tostring(err)) end
    run.cleanup[i] = nil
  end
  loop.shield(false)
end

-- Load a runbook file in its declaration phase.  Returns the plan, or nil
-- and "file:line: message".
function engine.declare(run, path)
  local env = api.environment(run)
  local chunk, err
  if path:match("%.md$") then       -- a markdown checklist (runbook.mdrun)
    local doc
    chunk, doc = require("runbook.mdrun").load(path, env)
    if chunk then run.plan.markdown = doc else err = doc end     -- the document read, for show
  else
    chunk, err = loadfile(path, "t", env)
  end
  if not chunk then return nil, err end
  run.phase = "declare"
  run.plan.file = path      -- require() finds modules beside it
  local ok, derr = pcall(chunk)
  if not ok then
    -- an error object names its line; a table raised with error{} does not
    if type(derr) ~= "string" and not errors.is(derr) then derr = path .. ": " .. tostring(derr) end
    return nil, tostring(derr)
  end
  local rerr = requires.check(run.plan, path)
  if rerr then return nil, rerr end
  run.env = env
  local plan = run.plan
  plan.header = plan.header or {}
  plan.name = plan.header.name or path:match("([^/]+)%.lua$") or path
  return plan
end

-- Bind params: -p values, then the target's params, then defaults, then a
-- prompt when a person is there.  Raises a usage error naming what is
-- missing or wrong.
function engine.bind(run, given)
  local plan = run.plan
  local values, sources = {}, {}
  for name in pairs(given) do
    if plan.params[name] == nil then
      local names = {}
      for _, p in ipairs(plan.param_list) do names[#names + 1] = p.name end
      usage_error("unknown param %q for runbook %s (its params: %s)", name, plan.name,
        #names > 0 and table.concat(names, ", ") or "none")
    end
  end
  local from_target = run.target and run.target.params or {}
  for _, p in ipairs(plan.param_list) do
    local v, src = given[p.name], (run.given_sources or {})[p.name] or "argument"
    if v == nil and from_target[p.name] ~= nil then v, src = from_target[p.name], "target" end
    if v == nil and p.default ~= nil then v, src = p.default, "default" end
    if v == nil and p.required then
      if not run.interactive then
        usage_error("missing required param %q%s: pass -p %s=VALUE", p.name,
          p.help and (" (" .. p.help .. ")") or "", p.name)
      end
      v = run.env.prompt("Value for param " .. p.name .. (p.help and (" (" .. p.help .. ")") or ""),
        { secret = p.secret })
      src = "prompt"
    end
    -- marked first, so no message below can show it
    if v ~= nil and p.secret then require("runbook.record").secret(v) end
    if v ~= nil and p.choices then
      local okc = false
      for _, c in ipairs(p.choices) do if tostring(c) == tostring(v) then okc = true end end
      if not okc then
        local shown = p.secret and string.format("its value (from %s; secret, not shown)",
          src == "argument" and "-p" or src) or string.format("%q", tostring(v))
        usage_error("param %q: %s is not one of: %s", p.name, shown, table.concat(p.choices, ", "))
      end
    end
    values[p.name], sources[p.name] = v, src
  end
  run.params = values
  run.param_sources = sources
  return values
end

-- Which step index to start at: --start-at N|id.
function engine.find_step(plan, key)
  local n = tonumber(key)
  if n and plan.steps[n] then return n end
  for _, s in ipairs(plan.steps) do if s.id == key then return s.index end end
  local ids = {}
  for _, s in ipairs(plan.steps) do ids[#ids + 1] = s.id end
  usage_error("no step %q in %s (steps 1-%d; ids: %s)", tostring(key), plan.name, #plan.steps,
    table.concat(ids, ", "))
end

-- The name of the signal ending the run ("SIGTERM", "SIGHUP"), or nil.
local function terminating_signal()
  local _, name = loop.terminated()
  return name
end

-- A wait cut short: by Ctrl-C, or by a terminating signal.
local function interrupted()
  return terminating_signal() and "terminated" or "interrupted"
end

-- What a question asked before the step runs (its approval, its
-- dangerous confirmation) ends it with: nil when fn(...) went through,
-- else outcome, message.
local function before_running(fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then return nil end
  if loop.interrupts() > 0 then return interrupted(), tostring(err) end
  return api.is_declined(err) and "declined" or "failed", tostring(err)
end

-- Run one attempt of a step as a task; returns outcome, message, traceback.
local function attempt(run, step)
  local p = api.params_proxy(run.plan, run.params)
  local outcome, msg
  run.fanouts = 0     -- (runbook.fanout counts each attempt's fan-outs from 1)
  if step.approval then
    outcome, msg = before_running(require("runbook.approval").for_step, run, step)
    if outcome then return outcome, msg end
  end
  if step.dangerous then
    outcome, msg = before_running(run.env.confirm,
      string.format("Step %d '%s' is marked dangerous. Run it?", step.index, step.title))
    if outcome then return outcome, msg end
  end
  local ok, err, tb = loop.run({ timeout = step.timeout }, function()
    context.bind(run)
    for _, hook in ipairs(run.before_step) do hook(step) end
    requires.provide(run, step, p)
    step.fn(p)
    if step.verify then
      local good, why = step.verify(p)
      if not good then
        errors.raise("failed", "verification failed" .. (why and (": " .. tostring(why)) or ""),
          { primitive = "verify" })
      end
    end
  end)
  if ok then return "ok" end
  if loop.interrupts() > 0 then return interrupted(), tostring(err), tb end
  if api.is_declined(err) then return "declined", tostring(err), tb end
  return "failed", tostring(err), tb
end

-- After a failure: retry, skip, abort or undo.  "interrupt" when Ctrl-C is
-- pressed while the question is up; "terminate" when a terminating signal
-- came (nobody is there to answer: the question is not asked).
local function decide(run, step, outcome)
  local sig = terminating_signal()
  if sig then return "terminate", sig end
  local can_undo = step.undo ~= nil
  local choices = can_undo and "[r]etry, [s]kip, [u]ndo, [a]bort" or "[r]etry, [s]kip, [a]bort"
  if not run.interactive and not run.answers then return "abort", "non-interactive" end
  local prompt = string.format("Step %d %s. %s? ", step.index, outcome, choices)
  local ctx = { answers = run.answers, yes = false, interactive = run.interactive, step = run.step }
  local ok, choice, source = pcall(ui.ask, { ctx = ctx, question = "!error", prompt = prompt,
    parse = function(text)
      local t = text:lower():match("^%s*(%a*)")
      local map = { r = "retry", retry = "retry", s = "skip", skip = "skip", a = "abort", abort = "abort" }
      if can_undo then map.u, map.undo = "undo", "undo" end
      return map[t], "answer " .. choices
    end })
  if not ok then
    sig = terminating_signal()
    if sig then return "terminate", sig end
    if loop.interrupts() > 0 then return "interrupt", "operator" end
    if not run.interactive then return "abort", "no answer for !error" end
    error(choice, 0)
  end
  return choice, source
end

local function run_undo(run, step)
  ui.print("  " .. ui.style("yellow", "undo:") .. " running the undo of step " .. step.index)
  local p = api.params_proxy(run.plan, run.params)
  local ok, err = loop.run({ timeout = step.timeout }, function()
    context.bind(run)
    step.undo(p)
  end)
  run.rec:event("undo", { step = step.id, ok = ok, error = not ok and tostring(err) or nil })
  if ok then ui.print("  undo: done") else ui.print("  " .. ui.style("red", "undo failed: ") .. tostring(err)) end
  return ok
end

local outcome_style = { ok = "green", failed = "red", declined = "yellow", skipped = "yellow",
  interrupted = "red", terminated = "red" }

-- The step.start event and the step's heading on the screen.
local function announce(run, step, n, attempts)
  run.step = step
  run.rec:event("step.start", { index = step.index, id = step.id, title = step.title,
    attempt = attempts, dangerous = step.dangerous })
  ui.print(ui.style("bold", string.format("[%d/%d] %s", step.index, n, step.title)) ..
    (attempts > 1 and ui.style("dim", string.format(" (attempt %d)", attempts)) or ""))
end

-- What to do after an attempt that did not succeed, and who decided: a
-- terminating signal or a second Ctrl-C decides alone; otherwise the
-- operator (or the answers file), again after an undo they chose.
-- interrupts is the Ctrl-C count when the attempt ended.  Returns
-- decision, source and, after an undo, whether it succeeded.
local function after_failure(run, step, outcome, interrupts)
  if terminating_signal() then return "terminate", terminating_signal() end
  if interrupts >= 2 then return "interrupt", "second Ctrl-C" end
  loop.ack_interrupt(interrupts)
  if outcome == "interrupted" then
    run.rec:event("interrupt", { step = step.id, count = 1 })
  end
  local decision, source = decide(run, step, outcome)
  if decision ~= "undo" then return decision, source end
  local undone = run_undo(run, step)
  decision, source = decide(run, step, "undone")
  if decision == "undo" then decision = "abort" end
  return decision, source, undone
end

-- How execute_step ends after the decision, or nil to try again.
local function ending(run, step, decision, source, attempts)
  if decision == "interrupt" then
    run.rec:event("interrupt", { step = step.id, count = 2 })
    return "interrupted"
  end
  if decision == "terminate" then return "terminated" end
  if decision == "skip" then
    ui.print("      " .. ui.style("yellow", "skipped"))
    return "skipped"
  end
  if decision == "abort" then return "aborted" end
  if attempts >= 10 and source == "answers" then
    ui.print("      giving up after 10 attempts answered from the answers file")
    return "aborted"
  end
end

-- Execute one step with its retries.  Returns "ok", "skipped", "aborted",
-- "interrupted" or "terminated".
local function execute_step(run, step, n)
  local attempts = 0
  while true do
    attempts = attempts + 1
    announce(run, step, n, attempts)
    local t0 = loop.now()
    local outcome, msg, tb = attempt(run, step)
    local dur = loop.now() - t0
    -- The transcript could not be written: nothing more can be recorded, so
    -- no retry/skip/abort question; the caller stops the run saying why.
    if run.rec.failed then error(run.rec.failed, 0) end
    if outcome == "ok" then
      run_state.record(run, step)
      run.rec:event("step.end", { index = step.index, id = step.id, status = "ok", duration = dur })
      if step.index == #run.plan.steps then run.rec:owe_sync() else run.rec:sync() end
      ui.print("      " .. ui.style("green", "ok") .. ui.style("dim", " (" .. ui.duration(dur) .. ")"))
      return "ok"
    end
    local interrupts = loop.interrupts()
    ui.print("      " .. ui.style(outcome_style[outcome] or "red", outcome) ..
      ui.style("dim", " (" .. ui.duration(dur) .. ")") .. ": " .. tostring(msg))
    local decision, source, undone = after_failure(run, step, outcome, interrupts)
    local status = decision == "skip" and "skipped" or outcome
    run_state.record(run, step)
    run.rec:event("step.end", { index = step.index, id = step.id, status = status, duration = dur,
      error = msg, traceback = tb, decision = decision, decided_by = source, undone = undone })
    run.rec:sync()
    local ended = ending(run, step, decision, source, attempts)
    if ended then return ended end
  end
end

-- The exit code of a run that ended with status: 128 + the signal for a
-- run that a terminating signal ended, as a shell reports a killed process.
function engine.exit_code(status)
  if status == "done" then return 0 end
  if status == "interrupted" then return 130 end
  if status == "terminated" then return 128 + (loop.terminated() or 15) end
  return 1
end

-- Run the plan from step `first`.  Returns the run status and exit code.
-- A terminating signal that comes between steps stops the run before the
-- next one starts; once every step has ended, the run is done.
function engine.execute(run, first)
  local plan = run.plan
  local n = #plan.steps
  run.phase = "execute"
  run_state.restore(run)
  cadence.start(run, first)
  -- the room's updates, at each step boundary (cmd/run set run.room from the config)
  if run.room then require("runbook.approval").attach(run) end
  local counts = { ok = 0, skipped = 0 }
  for i = 1, first - 1 do
    run.rec:event("step.end", { index = i, id = plan.steps[i].id, status = "skipped",
      reason = run.resume_from and "done in the resumed run" or "--start-at" })
  end
  local status = "done"
  for i = first, n do
    cadence.boundary(run, plan.steps[i])
    if loop.terminated() then
      status = "terminated"
      break
    end
    local result = execute_step(run, plan.steps[i], n)
    if result == "ok" or result == "skipped" then
      counts[result] = counts[result] + 1
    else
      status = result
      break
    end
  end
  if run.scenario then run.scenario:report_unused(run) end
  cadence.finish(run, status)
  run.step = nil
  run.phase = "done"
  return status, engine.exit_code(status), counts
end

-- The last step that ended ok in a transcript, its params, its runbook and
-- its events; flag (--resume, --retry-failed) names the option in errors.
function engine.resume_point(path, flag)
  flag = flag or "--resume"
  local record = require("runbook.record")
  local ok, res = transcript.verify(path)
  if ok == nil then usage_error("%s: cannot read %s: %s", flag, path, res.reason or "?") end
  if not ok then
    usage_error("%s: %s does not verify (line %d: %s); refusing to %s from it",
      flag, path, res.bad_line, res.reason, flag == "--resume" and "resume" or "retry")
  end
  local events = record.read(path)
  local info = { params = {}, last_ok = nil, hash = res.last_hash, events = events }
  for _, ev in ipairs(events) do
    if ev.event == "run.start" then
      info.runbook, info.file, info.run = ev.runbook, ev.file, ev.run
      info.target = ev.target
    elseif ev.event == "param" then
      info.params[ev.name] = { value = ev.value, secret = ev.secret }
    elseif ev.event == "step.end" and (ev.status == "ok" or ev.reason == "done in the resumed run") then
      -- (a resumed run's steps done before it count as done: resuming it
      -- again starts where it stopped, not at step 1)
      info.last_ok = { index = ev.index, id = ev.id }
    end
  end
  if info.runbook == nil then usage_error("%s: %s has no run.start event", flag, path) end
  info.state, info.state_lost = run_state.replay(events)
  return info
end

return engine
