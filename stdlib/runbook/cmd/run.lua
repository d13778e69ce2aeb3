-- runbook run: run a runbook step by step, every action recorded in a
-- transcript (stdlib/runbook/engine.lua runs the steps).
local answers = require("runbook.answers")
local cli = require("runbook.cli")
local config = require("runbook.config")
local engine = require("runbook.engine")
local loop = require("runbook.loop")
local operator = require("runbook.operator")
local record = require("runbook.record")
local sys = require("runbook.sys")
local ui = require("runbook.ui")

local M = {
  summary = "run a runbook step by step",
  synopsis = "NAME|FILE [options]",
  description = "Run a runbook step by step. NAME is looked up in ./runbooks, $RUNBOOK_PATH\n" ..
    "and the installed share dir. Every action is recorded in a transcript.\n" ..
    "An answers file holds lines '[step-id] question = answer'; '!error' as the\n" ..
    "question answers retry/skip/abort after a failure.",
  ends_on_term = true,
  options = {
    { name = "param", short = "p", value = "K=V", list = true, help = "set parameter K (repeatable)" },
    { name = "target", short = "t", value = "NAME", help = "use target NAME from the config file" },
    { name = "config", value = "FILE", help = "config file (default $XDG_CONFIG_HOME/runbook/config.lua)" },
    { name = "dry-run", short = "n", help = "rehearse: show mutating actions instead of running them" },
    { name = "yes", short = "y", help = "answer confirmations yes; abort on the first failure" },
    { name = "answers", value = "FILE", help = "answer questions from FILE: lines '[step-id] question = answer' (above)" },
    { name = "start-at", value = "STEP", help = "start at step STEP (number or id)" },
    { name = "resume", value = "TRANSCRIPT", help = "continue after the last step that ended ok" },
    { name = "retry-failed", value = "TRANSCRIPT", help = "run again only the failed or untried items of its fan-outs" },
    { name = "transcript", value = "PATH", help = "write the transcript to PATH" },
    { name = "scenario", value = "FILE", help = "replace chosen call results (game days)" },
  },
}

local function parse_params(list)
  local given = {}
  for _, kv in ipairs(list or {}) do
    local k, v = kv:match("^([%a_][%w_]*)=(.*)$")
    if not k then
      engine.usage_error("--param: expected K=V, got %q", kv)
    end
    given[k] = v
  end
  return given
end

-- Set up everything a run needs; raises engine usage errors.
-- The run's settings from the options: dry run, --yes, the answers file,
-- the scenario and the config.
local function run_fields(args)
  local fields = { dry_run = args["dry-run"] or false, yes = args.yes or false,
    interactive = operator.isatty(0) }
  if args.answers then
    local ok, a = pcall(answers.load, args.answers)
    if not ok then engine.usage_error("--answers: %s", tostring(a)) end
    fields.answers = a
    fields.answers_path = args.answers
  end
  if args.scenario then
    local ok, sc = pcall(require("runbook.scenario").load, args.scenario)
    if not ok then engine.usage_error("%s", tostring(sc)) end
    fields.scenario = sc
  end
  local cfg, cerr = config.load(args.config)
  if not cfg then engine.usage_error("%s", cerr) end
  fields.config = cfg
  return fields
end

-- --resume (or --retry-failed): the old run's point, checked to be a run
-- of this runbook.
local function resume_info(args, name, flag)
  local path = args[flag:sub(3)]
  if not path then return nil end
  local resume = engine.resume_point(path, flag)
  local resolved = cli.resolve(name)
  -- run.start records the file's realpath: compare like with like.
  if name ~= resume.runbook and (resolved == nil or sys.realpath(resolved) ~= resume.file) then
    engine.usage_error("%s: %s is a transcript of runbook %q, not %q", flag, path, resume.runbook, name)
  end
  return resume
end

-- --retry-failed: the old run, as --resume reads it, and the fan-out items
-- it left failed or untried (runbook.fanout), each step found in the plan.
local function retry_info(args, name)
  local path = args["retry-failed"]
  if not path then return nil end
  if args.resume then engine.usage_error("--retry-failed and --resume: give one of them") end
  local info = resume_info(args, name, "--retry-failed")
  info.selection = require("runbook.fanout").selection(info.events)
  if #info.selection == 0 then
    engine.usage_error("--retry-failed: %s has nothing to retry: no item of a fan-out (parallel, ssh.exec) " ..
      "failed or went untried in its run %s (--resume continues after its last step that ended ok)",
      path, tostring(info.run))
  end
  info.retry_path = path
  return info
end

-- The old run's params (not the secret ones: they were never recorded).
local function carry_params(run, resume, given)
  run.given_sources = {}
  for k, v in pairs(resume.params) do
    if given[k] == nil and not v.secret then
      given[k] = v.value
      run.given_sources[k] = "resumed"
    end
  end
  run.resume_from = resume
end

-- A --retry-failed run's first step: the first with items to retry, or
-- --start-at when the operator gives one before it.  Each step retried
-- gets its index in this plan.
local function retry_first(args, plan, retry, first)
  for _, entry in ipairs(retry.selection) do
    local found
    for _, s in ipairs(plan.steps) do
      if s.id == entry.id then found = s end
    end
    if not found then
      engine.usage_error("--retry-failed: %s has items to retry in step %q, which this runbook no longer has",
        retry.retry_path, entry.id)
    end
    entry.index = found.index
  end
  local at = retry.selection[1].index
  if args["start-at"] and first > at then
    engine.usage_error("--start-at %s: step %d comes after step %d '%s', the first with items to retry",
      args["start-at"], first, at, retry.selection[1].id)
  end
  return args["start-at"] and first or at
end

-- The first step: --start-at, or the one after the last step that ended ok.
local function first_step(args, plan, resume)
  local first = 1
  if args["start-at"] then first = engine.find_step(plan, args["start-at"]) end
  if resume and resume.selection then return retry_first(args, plan, resume, first) end
  if resume and resume.last_ok then
    first = resume.last_ok.index + 1
    for _, s in ipairs(plan.steps) do
      if s.id == resume.last_ok.id then first = s.index + 1 end
    end
    if first > #plan.steps then
      engine.usage_error("--resume %s: every step of that run ended ok (the last, %q, is step %d of %d): " ..
        "nothing to resume; run it again without --resume", args.resume, resume.last_ok.id, first - 1, #plan.steps)
    end
  end
  return first
end

local function prepare(args)
  local name = args[1]
  local from = args.resume or args["retry-failed"]
  if name == nil and from then
    name = engine.resume_point(from, args.resume and "--resume" or "--retry-failed").file   -- the transcript knows which file it ran
  end
  if name == nil then engine.usage_error("run: which runbook? (runbook run NAME|FILE; 'runbook list' shows them)") end
  if args[2] ~= nil then engine.usage_error("run: one runbook at a time (got %q too)", args[2]) end
  local fields = run_fields(args)
  local resume = retry_info(args, name) or resume_info(args, name, "--resume")
  local target_name = args.target or (resume and resume.target)
  if target_name then
    local t, terr = config.target(fields.config, target_name)
    if not t then engine.usage_error("%s", terr) end
    fields.target = t
  end
  local run, plan = cli.load_plan(name, fields)
  if not run then engine.usage_error("%s", plan) end
  if config.room_of(fields.config, fields.target) ~= nil then
    local spec, rerr = require("runbook.room").spec(fields.config, fields.target)
    if rerr then engine.usage_error("%s", rerr) end
    run.room = spec
  end
  local given = parse_params(args.param)
  if resume then carry_params(run, resume, given) end
  run.retry = resume and resume.selection and resume
  engine.bind(run, given)
  return run, plan, first_step(args, plan, resume)
end

-- The argv as recorded: the value of every secret param given with -p
-- (-p k=v, -pk=v, --param k=v, --param=k=v) is ***, whatever its length
-- (values under 4 characters are not hunted by the redaction).  Any
-- element that ends in one of those k=v as an option would write it is
-- hidden: an over-cautious match only hides a value, never shows one.
local function recorded_argv(plan, args)
  local given = {}
  for _, kv in ipairs(args.param or {}) do
    local k = kv:match("^([%a_][%w_]*)=")
    if k and plan.params[k] and plan.params[k].secret then given[#given + 1] = { k = k, kv = kv } end
  end
  if #given == 0 then return args._argv end
  local out = {}
  for i, a in ipairs(args._argv or {}) do
    out[i] = a
    for _, g in ipairs(given) do
      local prefix = a:sub(1, #a - #g.kv)
      if a:sub(-#g.kv) == g.kv and (prefix == "" or prefix == "--param=" or prefix:match("^%-%a*p$")) then
        out[i] = prefix .. g.k .. "=***"
      end
    end
  end
  return out
end

-- run.start's retry_failed: the transcript retried, its run and last
-- hash, and per step and fan-out the items run again.
local function retried(retry)
  local steps = {}
  for _, entry in ipairs(retry.selection) do
    for k, f in pairs(entry.fanouts) do
      local items = {}
      for i in pairs(f.todo) do items[#items + 1] = i end
      table.sort(items)
      if #items > 0 then steps[#steps + 1] = { step = entry.id, index = entry.index, fanout = k, items = items } end
    end
  end
  table.sort(steps, function(a, b) return a.index < b.index or (a.index == b.index and a.fanout < b.fanout) end)
  return { transcript = retry.retry_path, run = retry.run, last_hash = retry.hash, fanouts = steps }
end

local function start_record(run, plan, args, first)
  local rec, err = record.open(plan.name, args.transcript)
  if not rec then engine.usage_error("%s", err) end
  run.rec = rec
  if run.room then require("runbook.room").attach(rec, run.room) end
  rec:event("run.start", {
    runbook = plan.name, title = plan.header.title, severity = plan.header.severity,
    file = sys.realpath(plan.file) or plan.file, operator = operator.username(),
    host = operator.hostname(), argv = recorded_argv(plan, args), dry_run = run.dry_run,
    scenario = args.scenario,
    target = run.target and run.target.name, start_at = first > 1 and first or nil,
    resumed_from = run.resume_from and not run.retry and { transcript = args.resume, run = run.resume_from.run,
      last_hash = run.resume_from.hash } or nil,
    retry_failed = run.retry and retried(run.retry) or nil,
    pid = sys.getpid(), version = require("runbook.host").version,
  })
  for _, p in ipairs(plan.param_list) do
    local v = run.params[p.name]
    rec:event("param", { name = p.name, value = p.secret and v ~= nil and "***" or v,
      secret = p.secret or nil, source = run.param_sources[p.name] })
  end
  rec:owe_sync()    -- done at the first step's end, or before anything acts or waits
end

local function is_write_error(e)
  return getmetatable(e) == record.WriteError
end

local function traceback_unless_write_error(e)
  if is_write_error(e) then return e end
  return debug.traceback(e)
end

-- The transcript could not be written (a full disk, an I/O error): the run
-- stops, since nothing it did next would be recorded.  Says what failed and
-- where, tries once to record run.end, and leaves whole lines that verify.
-- Exit 1 (README: "the transcript could not be written").
local function stopped_by_write_error(run, err, duration)
  local rec = run.rec
  local step = run.step
  local ended = rec:try_end({ status = "transcript_failed", exit = 1, duration = duration,
    error = err.message, steps = #run.plan.steps })
  rec:close()
  ui.eprint(ui.style("red", "runbook: ") .. err.message)
  ui.eprint(string.format("runbook: the run stopped%s: what it did next would not be recorded",
    step and string.format(" at step %d '%s'", step.index, step.title) or ""))
  ui.eprint(string.format("runbook: the %d line(s) written before it %s; check them with: runbook verify %s",
    err.lines, ended and "and a run.end saying so are whole" or "are whole (no run.end: no room for it)",
    rec.path))
  return 1
end

-- A terminating signal before the transcript was opened: nothing ran.
local function terminated_early()
  local _, name = loop.terminated()
  return cli.fail(engine.exit_code("terminated"), "%s before the run started: nothing was run", name)
end

-- Write run.end and close the transcript; returns its final hash.  The
-- signal that ended the run (or came during its cleanup) is recorded.
local function end_record(run, plan, status, code, counts, t0)
  local rec = run.rec
  local _, signame = loop.terminated()
  rec:event("run.end", { status = status, exit = code, signal = signame, duration = loop.now() - t0,
    steps = #plan.steps, ok = counts.ok, skipped = counts.skipped })
  rec:sync()
  local final = rec:hash()
  rec:close()
  return final
end

function M.run(args)
  local ok, run, plan, first = pcall(prepare, args)
  if not ok then
    if loop.terminated() then return terminated_early() end
    if getmetatable(run) == engine.UsageError then return cli.fail(2, "%s", run.message) end
    return cli.fail(2, "%s", tostring(run))
  end
  local okr, rerr = pcall(start_record, run, plan, args, first)
  if not okr then return cli.fail(2, "%s", tostring(rerr)) end
  local rec = run.rec
  local h = plan.header
  ui.print(ui.style("bold", "runbook " .. plan.name) .. (h.title and (": " .. h.title) or "") ..
    (h.severity and ui.style("yellow", " [" .. h.severity .. "]") or ""))
  ui.print(ui.style("dim", "transcript: " .. rec.path))
  if run.dry_run then ui.print(ui.style("magenta", "DRY RUN: mutating actions are shown, not run")) end
  if run.scenario then ui.print(ui.style("magenta", "SCENARIO: " .. args.scenario .. " replaces matching calls")) end
  if run.retry then
    local n = 0
    for _, e in ipairs(run.retry.selection) do n = n + e.count end
    ui.print(string.format("retrying %d failed or untried item(s) of %s, from step %d", n,
      args["retry-failed"], first))
  elseif run.resume_from then
    ui.print(string.format("resuming %s at step %d", args.resume, first))
  end
  local t0 = loop.now()
  local okx, status, code, counts = xpcall(engine.execute, traceback_unless_write_error, run, first)
  if not okx and is_write_error(status) then
    engine.finish(run)
    return stopped_by_write_error(run, status, loop.now() - t0)
  end
  if not okx then
    -- A bug in the host, not in the runbook: still close the record.
    ui.eprint(ui.style("red", "runbook: internal error: ") .. tostring(status))
    status, code, counts = "error", 1, { ok = 0, skipped = 0 }
  end
  engine.finish(run)
  local okw, final = pcall(end_record, run, plan, status, code, counts, t0)
  if not okw and is_write_error(final) then return stopped_by_write_error(run, final, loop.now() - t0) end
  if not okw then error(final, 0) end
  local color = status == "done" and "green" or "red"
  local why = status == "terminated" and (" (" .. select(2, loop.terminated()) .. ")") or ""
  ui.print(ui.style(color, "run " .. status .. why) .. string.format(" in %s: %d ok, %d skipped of %d steps",
    ui.duration(loop.now() - t0), counts.ok, counts.skipped, #plan.steps))
  ui.print(ui.style("dim", "transcript: " .. rec.path .. "\nfinal hash: " .. final))
  return code
end

return M
