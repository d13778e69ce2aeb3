-- runbook.api: the globals a runbook (and the REPL) sees.
--
-- api.environment(run) returns a fresh environment bound to one run.  The
-- declaration verbs (runbook, param, step) only register into run.plan;
-- the primitives refuse to run until run.phase is "execute".  The verbs
-- are defined once, here (api.verbs); each finds its run through
-- runbook.context.
--
-- The error contract, written down once: a primitive that fails raises an
-- error object (runbook.errors) whose message says what failed, where, and
-- what to check, positioned at the runbook's own line, and whose kind says
-- what sort of failure it is.  The step engine turns any error into the
-- operator's retry/skip/abort; an author who wants to branch on a failure
-- uses pcall (which lets Ctrl-C through) and reads err.kind.  confirm()
-- raises a "declined" error object.
local cexec = require("runbook.exec")
local context = require("runbook.context")
local errors = require("runbook.errors")
local loop = require("runbook.loop")
local record = require("runbook.record")
local surface = require("runbook.surface")
local ui = require("runbook.ui")

local api = {}
local verbs = {}
api.verbs = verbs

local SEVERITIES = { P0 = true, P1 = true, P2 = true, P3 = true }

-- The error object confirm() raises when the operator says no.
api.Declined = errors.Declined

function api.is_declined(err)
  return getmetatable(err) == api.Declined
end

function api.slug(title)
  local s = title:lower():gsub("[^%w]+", "-"):gsub("^%-+", ""):gsub("%-+$", "")
  if #s > 48 then s = s:sub(1, 48):gsub("%-+$", "") end
  return s ~= "" and s or "step"
end

local function quote_arg(a)
  a = tostring(a)
  if a:match("^[%w%-_./:=@%%+,]+$") then return a end
  return "'" .. a:gsub("'", "'\\''") .. "'"
end

function api.argv_string(argv)
  local parts = {}
  for i = 1, #argv do parts[i] = quote_arg(argv[i]) end
  return table.concat(parts, " ")
end

-- The call as shown to the operator.  spec.describe may be a function, so
-- a primitive on a hot path builds the text only when it is shown.
function api.describe(spec)
  local d = spec.describe
  if type(d) == "function" then
    d = d(spec)
    spec.describe = d
  end
  return d
end

-- api.call's answer from a --scenario rule that matched the call, recorded.
local function from_scenario(run, spec, fields, rule)
  ui.print("  " .. ui.style("magenta", "scenario:") .. " " .. api.describe(spec) .. " -> " ..
    (spec.secret and "(result not shown: secret = true)" or rule.summary))
  fields.outcome = rule.error and "error" or "ok"
  fields.scenario = rule.name
  fields.error = rule.error
  fields.result = not spec.secret and rule.result or nil
  if run.rec then run.rec:event("call", fields) end
  if rule.error then
    return false, errors.new(errors.classify(rule.error), spec.primitive .. ": " .. rule.error,
      { primitive = spec.primitive, scenario = rule.name })
  end
  local result = rule.copy()
  if spec.complete then result = spec.complete(result, spec) end
  if spec.secret and spec.mark then spec.mark(result, spec) end
  return true, result
end

-- Record a primitive call and raise or return.  spec: {primitive=, args=,
-- mutating=, describe= (text, or a function returning it), perform=fn() -> result, stand_in=fn() -> result,
-- summary=fn(result) -> fields, complete=fn(result) -> result (fills in a
-- scenario's partial result), secret= (the call's secret = true), mark=fn(result)
-- (marks a secret call's result)}.  describe, perform, stand_in, and
-- summary, complete and mark after the result, are also passed spec: a primitive on a hot
-- path keeps what they need in spec and passes functions made once,
-- instead of making closures on every call.  A --scenario rule matching the call
-- replaces it; else a mutating call in a dry run is simulated; else it is
-- performed.  The result of a secret call is marked before its event is
-- recorded, and the event says secret = true; its summary (the
-- primitive's) holds no output.  Returns ok, result_or_error (an error
-- object of runbook.errors, positioned at the runbook's line).
function api.call(run, spec)
  if run.phase ~= "execute" then
    return false, errors.new("usage", string.format("%s: cannot run while the runbook is being " ..
      "declared; call it inside a step function", spec.primitive), { primitive = spec.primitive })
  end
  -- Every member the event may get is named here, so the table is made
  -- with room for them once rather than grown as they are set.
  -- mutating: runbook stats tells a step that changed something (docs/stats.md)
  local fields = { primitive = spec.primitive, args = spec.args, step = run.step and run.step.id,
    secret = spec.secret or nil, mutating = spec.mutating and true or nil,
    outcome = nil, duration = nil, result = nil, error = nil }
  local rule = run.scenario and run.scenario:match(spec.primitive, api.describe(spec), run.step)
  if rule then return from_scenario(run, spec, fields, rule) end
  if run.dry_run and spec.mutating then
    ui.print("  " .. ui.style("magenta", "would run:") .. " " .. api.describe(spec))
    fields.outcome = "simulated"
    fields.dry_run = true
    if run.rec then run.rec:event("call", fields) end
    return true, spec.stand_in(spec)
  end
  -- A live REPL shows a write for what it is, and asks first against a
  -- target (runbook.repl); a "no" is the declined error, as confirm's.
  if spec.mutating and run.before_write then
    local okw, werr = pcall(run.before_write, run, spec)
    if not okw then return false, errors.from(werr, spec.primitive) end
  end
  if run.rec and run.rec.owed then
    -- after the last step (a cadence update, say): its end reaches the disk first
    local oks, serr = pcall(run.rec.settle, run.rec)
    if not oks then return false, errors.from(serr, spec.primitive) end
  end
  local t0 = loop.now()
  local ok, res = pcall(spec.perform, spec)
  -- to the microsecond: the transcript writes that without printf
  fields.duration = (loop.now() - t0) * 1e6 // 1 / 1e6
  if ok then
    fields.outcome = "ok"
    if spec.secret and spec.mark then spec.mark(res, spec) end
    if spec.summary then fields.result = spec.summary(res, spec) end
  else
    fields.outcome = "error"
    res = errors.from(res, spec.primitive)
    fields.error = errors.message(res)
  end
  if run.rec then run.rec:event("call", fields) end
  return ok, res
end

local function excerpt(s, n)
  s = s:gsub("%s+$", "")
  if #s > n then s = "..." .. s:sub(-n) end
  return s
end

-- The notice for a command's output cut at the capture cap.
function api.cut_notice(r)
  local mib = cexec.output_cap // (1024 * 1024)
  local dropped = {}
  for _, k in ipairs({ "stdout", "stderr" }) do
    local n = r[k .. "_dropped"]
    if n and n > 0 then dropped[#dropped + 1] = string.format("%s %d bytes", k, n) end
  end
  return string.format("output over %d MiB: only the first %d MiB of each stream were kept%s",
    mib, mib, #dropped > 0 and (" (not kept: " .. table.concat(dropped, ", ") .. ")") or "")
end

-- What the primitives that run a command (exec, sh, ssh exec) add to the
-- call spec: a dry run's stand-in (a success with no output), the fields
-- recorded (byte counts instead of the output of a secret call), the
-- marking of a secret call's output, and the completion of a --scenario's
-- partial result, which finish(r) ends (it sets r.ok).  extra: fields both
-- results also carry.
function api.command_call(spec, finish, extra)
  local function with_extra(r)
    for k, v in pairs(extra or {}) do r[k] = v end
    return r
  end
  spec.stand_in = function()
    return with_extra({ code = 0, ok = true, stdout = "", stderr = "", duration = 0, dry_run = true })
  end
  -- What a command printed, run or a --scenario's stand-in, is kept
  -- without its escape sequences (pm2 colours even into a pipe; escapes
  -- defeat the patterns that read it and would reach notify and the
  -- report), and a capture cut at its cap says so.
  local function stripped(r)
    r.stdout, r.stderr = cexec.strip_ansi(r.stdout), cexec.strip_ansi(r.stderr)
    return r
  end
  local perform = spec.perform
  spec.perform = function()
    local r = stripped(perform())
    if r.truncated then ui.log("warn", api.cut_notice(r)) end
    return r
  end
  spec.summary = function(r)
    if spec.secret then
      return { code = r.code, signal = r.signal, stdout_bytes = #r.stdout, stderr_bytes = #r.stderr,
               truncated = r.truncated }
    end
    return { code = r.code, signal = r.signal, stdout = r.stdout, stderr = r.stderr,
             truncated = r.truncated, stdout_dropped = r.stdout_dropped,
             stderr_dropped = r.stderr_dropped }
  end
  spec.mark = function(r)
    record.secret(r.stdout)
    record.secret(r.stderr)
  end
  spec.complete = function(r)
    r.code = r.code or 0
    r.stdout, r.stderr, r.duration = r.stdout or "", r.stderr or "", r.duration or 0
    return finish(with_extra(stripped(r)))
  end
  return spec
end

-- Streams what a command prints to the screen under its "$ ..." line as it
-- comes: returns feed (nil when quiet), to give the command, and done, to
-- call with pcall's results: it flushes the last partial line, then
-- returns the result or raises the error as it is (a C primitive's message
-- carries no position of ours).
function api.output(quiet)
  local sink = not quiet and ui.output_sink("    | ") or nil
  return sink and sink.feed, function(ok, r)
    if sink then sink.flush() end
    if not ok then error(r, 0) end
    return r
  end
end

-- What the message of a failed command adds after its exit code: an
-- excerpt of its output, never the output of a secret call.
function api.failure_detail(r, secret)
  if secret then return " (output not shown: secret = true)" end
  local detail = excerpt(r.stderr ~= "" and r.stderr or r.stdout, 300)
  return detail ~= "" and (": " .. detail) or ""
end

-- Words in a variable name that say its value is a credential.
local CREDENTIAL_WORDS = { "PASS", "SECRET", "TOKEN", "KEY", "AUTH", "CREDENTIAL", "PRIVATE", "COOKIE" }

local function is_credential_name(name)
  local upper = name:upper()
  for _, word in ipairs(CREDENTIAL_WORDS) do
    if upper:find(word, 1, true) then return true end
  end
  return false
end

-- exec{env = ...} as recorded: the names, sorted, never the values.  The
-- values of names that say they are credentials (PGPASSWORD, API_TOKEN)
-- are marked secret too, as a command may print its environment.
local function env_names(env)
  if type(env) ~= "table" then return env end
  local names = {}
  for k, v in pairs(env) do
    names[#names + 1] = tostring(k)
    if type(v) == "string" and is_credential_name(tostring(k)) then record.secret(v) end
  end
  table.sort(names)
  return names
end

local function exec_impl(primitive, spec, display_argv, display)
  local run = context.need(primitive)
  if type(spec) ~= "table" then errors.usage(primitive .. ": expected a table {argv..., timeout=}", primitive) end
  local argv = {}
  for i = 1, #spec do argv[i] = tostring(spec[i]) end
  if #argv == 0 then errors.usage(primitive .. ": no command given", primitive) end
  local describe = display or api.argv_string(display_argv or argv)
  local cspec = { timeout = spec.timeout or 60, stdin = spec.stdin, env = spec.env, cwd = spec.cwd }
  for i = 1, #argv do cspec[i] = argv[i] end
  local secret = spec.secret and true or nil
  local ok, res = api.call(run, api.command_call({
    primitive = primitive,
    args = { argv = display_argv or argv, readonly = spec.readonly or false,
             timeout = cspec.timeout, cwd = spec.cwd, env = env_names(spec.env),
             stdin_bytes = spec.stdin and #spec.stdin or nil },
    mutating = not spec.readonly,
    describe = describe,
    secret = secret,
    perform = function()
      ui.print("  " .. ui.style("dim", "$ " .. describe))
      local feed, done = api.output(spec.quiet or secret)   -- a secret is never streamed
      cspec.on_output = feed
      return done(pcall(cexec.run, cspec))
    end,
  }, function(r)
    r.ok = r.code == 0
    return r
  end))
  if not ok then error(res, 0) end
  if spec.check ~= false and res.code ~= 0 then
    errors.raise("failed", string.format("%s %s: exited with code %d%s%s", primitive, display or argv[1],
      res.code, res.signal and (" (" .. res.signal .. ")") or "", api.failure_detail(res, secret)),
      { primitive = primitive, code = res.code, signal = res.signal })
  end
  return res
end

-- The ask wrappers record every question and its answer.
local function asked(run, kind, question, answer, source, secret)
  -- what was answered fills a message template's [Question] (runbook.cadence)
  if not secret and type(answer) == "string" and answer ~= "" then
    run.answered = run.answered or {}
    run.answered[question] = answer
  end
  if run.rec then
    run.rec:event(kind, { question = question, answer = secret and "***" or answer,
      source = source, step = run.step and run.step.id })
  end
end

-- (the `waiting` event a question writes before it blocks on the
-- operator, which the room shows, is runbook.escalation's ui.on_wait)
local function question_ctx(run)
  return { answers = run.answers, yes = run.yes, interactive = run.interactive, step = run.step }
end

-- The run of a question, once the question checks out.
local function question_run(name, q)
  if type(q) ~= "string" or q == "" then errors.usage(name .. ": the question must be a non-empty string", name) end
  return context.need(name)
end

-- runbook{...}: the header, once.
function verbs.runbook(header)
  local plan = context.need("runbook{}").plan
  if type(header) ~= "table" then errors.usage("runbook{}: expected a table {name=, title=, severity=}", "runbook") end
  if plan.header then errors.usage("runbook{}: the header is declared twice", "runbook") end
  for _, k in ipairs({ "name", "title", "description" }) do
    if header[k] ~= nil and type(header[k]) ~= "string" then
      errors.usage(string.format("runbook{}: %s must be a string", k), "runbook")
    end
  end
  if header.severity ~= nil and not SEVERITIES[header.severity] then
    errors.usage(string.format("runbook{}: severity %q is not one of P0, P1, P2, P3",
      tostring(header.severity)), "runbook")
  end
  if header.templates ~= nil then
    local bad = require("runbook.templates").check(header.templates, "runbook{}: templates")
    if bad then errors.usage(bad, "runbook") end
  end
  plan.header = header
end

-- param(name, {help, default, required, secret, choices}): an input.
function verbs.param(name, spec)
  local run = context.need("param")
  local plan = run.plan
  if run.phase ~= "declare" then errors.usage("param: only at the top level of a runbook", "param") end
  if type(name) ~= "string" or not name:match("^[%a_][%w_]*$") then
    errors.usage("param: the name must be an identifier (letters, digits, _)", "param")
  end
  spec = spec or {}
  if type(spec) ~= "table" then errors.usage("param: options must be a table", "param") end
  if plan.params[name] then errors.usage(string.format("param %q is declared twice", name), "param") end
  if spec.choices ~= nil and type(spec.choices) ~= "table" then
    errors.usage(string.format("param %q: choices must be a list", name), "param")
  end
  local p = { name = name, help = spec.help, default = spec.default, required = spec.required,
    secret = spec.secret, choices = spec.choices, line = debug.getinfo(2, "l").currentline }
  plan.params[name] = p
  plan.param_list[#plan.param_list + 1] = p
end

-- A step's id (opts.id, else from its title) once its options check
-- out (verify and undo functions, a positive timeout, an id no other step
-- has); nil, message when they do not.
local function step_id(plan, title, opts)
  for _, k in ipairs({ "verify", "undo" }) do
    if opts[k] ~= nil and type(opts[k]) ~= "function" then
      return nil, string.format("step %q: %s must be a function", title, k)
    end
  end
  if opts.timeout ~= nil and (type(opts.timeout) ~= "number" or opts.timeout <= 0) then
    return nil, string.format("step %q: timeout must be a positive number of seconds", title)
  end
  local id = opts.id or api.slug(title)
  if type(id) ~= "string" or not id:match("^[%w][%w%-_.]*$") then
    return nil, string.format("step %q: id must be letters, digits, '-', '_' or '.'", title)
  end
  for _, s in ipairs(plan.steps) do
    if s.id == id then
      return nil, string.format("duplicate step id %q (step %d at line %d has it already)", id, s.index, s.line)
    end
  end
  return id
end

-- step(title, [opts,] fn): registered, run in the execute phase.
function verbs.step(title, opts, fn)
  local run = context.need("step")
  local plan = run.plan
  if run.phase ~= "declare" then errors.usage("step: only at the top level of a runbook", "step") end
  if type(opts) == "function" then opts, fn = {}, opts end
  if type(title) ~= "string" or title == "" then errors.usage("step: the title must be a non-empty string", "step") end
  if type(opts) ~= "table" then errors.usage("step: options must be a table", "step") end
  if type(fn) ~= "function" then errors.usage(string.format("step %q: missing its function", title), "step") end
  local id, misuse = step_id(plan, title, opts)
  if not id then errors.usage(misuse, "step") end
  if opts.approval ~= nil then     -- (runbook.approval is loaded only for a step that asks)
    local _, amisuse = require("runbook.approval").check_from(opts.approval,
      string.format("step %q: approval", title))
    if amisuse then errors.usage(amisuse, "step") end
  end
  if opts.approval_timeout ~= nil and (type(opts.approval_timeout) ~= "number" or opts.approval_timeout <= 0) then
    errors.usage(string.format("step %q: approval_timeout must be a positive number of seconds", title), "step")
  end
  plan.steps[#plan.steps + 1] = { index = #plan.steps + 1, title = title, id = id,
    fn = fn, dangerous = opts.dangerous and true or false, timeout = opts.timeout,
    verify = opts.verify, undo = opts.undo, requires = opts.requires,
    approval = opts.approval, approval_timeout = opts.approval_timeout,
    line = debug.getinfo(2, "l").currentline }
end

verbs.requirement = require("runbook.requires").requirement

-- choose(): the question with its numbered list, and the parser of an
-- answer, a number of the list or one of its values as written.
local function choice_prompt(question, list)
  local lines = { question }
  for i, v in ipairs(list) do lines[#lines + 1] = string.format("    %d) %s", i, tostring(v)) end
  return table.concat(lines, "\n") .. "\n  choice [1-" .. #list .. "]: "
end

-- A choice: its number, its text, or the start of exactly one choice's
-- text, in any case ("s" for "skipped", "not" for "not done").
local function choice_parser(list)
  return function(text)
    text = text:match("^%s*(.-)%s*$")
    local n = tonumber(text)
    if n and list[n] ~= nil then return list[n] end
    for _, v in ipairs(list) do if tostring(v) == text then return v end end
    local low, found = text:lower(), nil
    for _, v in ipairs(list) do
      if low ~= "" and tostring(v):lower():sub(1, #low) == low then
        if found ~= nil then found = false break end
        found = v
      end
    end
    if found then return found end
    return nil, "choose a number from 1 to " .. #list .. (found == false and
      (" (\"" .. text .. "\" starts more than one)") or " (or the start of a choice's text)")
  end
end

-- prompt(): an answer must match opts.pattern, and be given unless
-- opts.allow_empty.
local function prompt_parser(opts)
  return function(text)
    if opts.pattern and not text:match("^" .. opts.pattern .. "$") then
      return nil, "the answer must match " .. opts.pattern
    end
    if text == "" and not opts.allow_empty then return nil, "an answer is needed" end
    return text
  end
end

-- manual(): Enter (or y, yes, d, done) marks it done; n, no or skip not.
local function parse_manual(text)
  local t = text:lower():match("^%s*(.-)%s*$")
  if t == "" or t == "y" or t == "yes" or t == "done" or t == "d" then return true end
  if t == "n" or t == "no" or t == "skip" then return false end
  return nil, "press Enter when done, or answer n"
end

-- The questions: confirm, yesno, choose, prompt, manual.
function verbs.confirm(question)
  local run = question_run("confirm", question)
  local yes, source = ui.ask { ctx = question_ctx(run), question = question,
    prompt = question .. " [y/n] ", parse = ui.parse_yesno, confirmation = true }
  asked(run, "confirm", question, yes and "yes" or "no", source)
  if not yes then error(errors.declined(question, "confirm"), 0) end
  return true
end

-- approve(question, {from =, timeout =}): a second person's approval
-- (runbook.approval).
function verbs.approve(question, opts)
  return require("runbook.approval").ask(question_run("approve", question), question, opts)
end

function verbs.yesno(question)
  local run = question_run("yesno", question)
  local yes, source = ui.ask { ctx = question_ctx(run), question = question,
    prompt = question .. " [y/n] ", parse = ui.parse_yesno }
  asked(run, "prompt", question, yes and "yes" or "no", source)
  return yes
end

function verbs.choose(question, list, opts)
  local run = question_run("choose", question)
  if type(list) ~= "table" or #list == 0 then errors.usage("choose: expected a non-empty list of choices", "choose") end
  opts = opts or {}
  local value, source = ui.ask { ctx = question_ctx(run), question = question,
    prompt = choice_prompt(question, list), default = opts.default, parse = choice_parser(list) }
  asked(run, "prompt", question, tostring(value), source)
  return value
end

function verbs.prompt(question, opts)
  local run = question_run("prompt", question)
  opts = opts or {}
  local hint = opts.default and not opts.secret and (" [" .. tostring(opts.default) .. "]") or ""
  local value, source = ui.ask { ctx = question_ctx(run), question = question,
    prompt = question .. hint .. ": ", secret = opts.secret, default = opts.default,
    parse = prompt_parser(opts) }
  if opts.secret then record.secret(value) end
  asked(run, "prompt", question, value, source, opts.secret)
  return value
end

function verbs.manual(instruction)
  local run = question_run("manual", instruction)
  local done, source = ui.ask { ctx = question_ctx(run), question = instruction,
    prompt = ui.style("yellow", "[manual] ") .. instruction .. "\n  done? [Enter = done, n = not done] ",
    confirmation = true, parse = parse_manual }
  asked(run, "manual", instruction, done and "done" or "not done", source)
  if not done then error(errors.declined(instruction, "manual"), 0) end
  return true
end

-- log.info/warn/error and print: shown and recorded.
local function record_log(level, msg)
  local run = context.run()
  if run and run.rec then run.rec:event("log", { level = level, message = msg, step = run.step and run.step.id }) end
end

local function logger(level)
  return function(fmt, ...)
    local msg = select("#", ...) > 0 and string.format(fmt, ...) or tostring(fmt)
    ui.log(level, msg)
    record_log(level, msg)
  end
end
verbs.log = { info = logger("info"), warn = logger("warn"), error = logger("error") }

function verbs.print(...)
  local parts = table.pack(...)
  for i = 1, parts.n do parts[i] = tostring(parts[i]) end
  local msg = table.concat(parts, "\t", 1, parts.n)
  ui.print(msg)
  record_log("print", msg)
end

-- poll's `call` event: one when the condition held, or when it timed out.
local function record_poll(run, what, every, timeout, outcome, msg, attempts, t0)
  if run.rec then
    run.rec:event("call", { primitive = "poll", args = { what = what, every = every, timeout = timeout },
      outcome = outcome, error = msg, attempts = attempts, duration = loop.now() - t0,
      step = run.step and run.step.id })
  end
end

-- poll(fn, {every, timeout, what}): fn() until it is truthy.
function verbs.poll(fn, opts)
  if type(fn) ~= "function" then errors.usage("poll: expected a function", "poll") end
  local run = context.need("poll")
  opts = opts or {}
  local every, timeout = opts.every or 5, opts.timeout or 300
  local what = opts.what or "condition"
  local t0 = loop.now()
  local attempts = 0
  while true do
    attempts = attempts + 1
    local value = fn()
    if value then
      record_poll(run, what, every, timeout, "ok", nil, attempts, t0)
      return value
    end
    if loop.now() - t0 + every > timeout then
      local msg = string.format("poll: %s still not true after %s (%d attempts, every %s)",
        what, ui.duration(loop.now() - t0), attempts, ui.duration(every))
      record_poll(run, what, every, timeout, "error", msg, attempts, t0)
      errors.raise("timeout", msg, { primitive = "poll", attempts = attempts })
    end
    local ok, err = pcall(loop.sleep, every)
    if not ok then error(errors.from(err, "poll"), 0) end
  end
end

-- fn(item, i) for every item, at most limit at a time, each in a task of
-- the loop bound to the run of the caller, until Ctrl-C: the results and
-- errors by index, and how many failed.
local function fan_out(items, fn, limit, budget, is_failure)
  local n = #items
  local run = context.run()
  local results, errs, failed, nexti = {}, {}, 0, 0
  local function worker()
    context.bind(run)
    while loop.interrupts() == 0 and not (budget and failed > budget) do
      nexti = nexti + 1
      local i = nexti
      if i > n then return end
      local ok, r = pcall(fn, items[i], i)
      if ok then results[i] = r else errs[i] = r; failed = failed + 1 end
      -- (a result that says it failed, as ssh.exec's hosts do, spends the budget too)
      if ok and is_failure and is_failure(r) then failed = failed + 1 end
    end
  end
  for _ = 1, math.min(limit, n) do loop.spawn(worker) end
  loop.join()
  return results, errs, failed
end

-- "parallel: 2 of 5 failed: [1] ...; [4] ...", the first three errors;
-- its kind is the branches' when they all failed alike.
local function failures(errs, failed, n, untried)
  local msgs, kind = {}, nil
  for i = 1, n do
    if errs[i] ~= nil and errors.kind(errs[i]) ~= "untried" then
      if #msgs < 3 then msgs[#msgs + 1] = string.format("[%d] %s", i, tostring(errs[i])) end
      local k = errors.kind(errs[i])
      kind = (kind == nil or kind == k) and k or "error"
    end
  end
  return errors.new(kind, string.format("parallel: %d of %d failed: %s%s%s", failed, n,
    table.concat(msgs, "; "), failed > #msgs and "; ..." or "",
    (untried or 0) > 0 and string.format("; %d not tried (past max_errors)", untried) or ""),
    { primitive = "parallel", errors = errs, untried = untried })
end

-- max_errors = N or "10%" (of the items): how many may fail before no
-- new item is started (as AWS SSM's rate control); nil: no budget.
local function error_budget(v, n)
  if v == nil then return nil end
  local pct = type(v) == "string" and tonumber(v:match("^(%d+%.?%d*)%%$"))
  if pct then return math.floor(n * pct / 100) end
  if math.type(v) == "integer" and v >= 0 then return v end
  errors.usage(string.format("parallel: max_errors must be a count (0, 3) or a share (\"10%%\"), got %s",
    tostring(v)), "parallel")
end

-- The items the budget left untried: their errors (kind "untried"), and
-- how many.
local function mark_untried(items, results, errs, budget)
  local untried = 0
  for i = 1, #items do
    if results[i] == nil and errs[i] == nil then
      errs[i] = errors.new("untried", string.format("not tried: more than max_errors (%d) had failed", budget),
        { primitive = "parallel" })
      untried = untried + 1
    end
  end
  return untried
end

-- The k-th fan-out a step's attempt calls itself (one inside another's
-- branch is not counted): the indices of items it runs (all but those a
-- --retry-failed run found done, runbook.fanout) and k, or k nil when it
-- is not recorded (outside a step, nested).
local function fanout_slot(run, items, opts)
  local all = {}
  for i = 1, #items do all[i] = i end
  if not (run and run.rec and run.step) or (run.fanout_depth or 0) > 0 then return all end
  run.fanouts = (run.fanouts or 0) + 1
  local fanout = require("runbook.fanout")     -- loaded by the first fan-out, not at start-up
  local entry = run.retry and fanout.step_of(run.retry.selection, run.step.id)
  local ok, ran = pcall(fanout.indices, entry, run.fanouts, items)
  if not ok then errors.usage(ran, opts.primitive or "parallel") end
  return ran or all, run.fanouts, entry ~= nil and entry.fanouts[run.fanouts] ~= nil
end

-- The fan-out's `fanout` event (runbook.fanout says what it holds).
local function record_fanout(run, k, retried, items, ran, results, errs, opts)
  local ev = require("runbook.fanout").outcome(items, results, errs, ran, opts.is_failure, errors.kind)
  ev.step, ev.index, ev.fanout, ev.primitive = run.step.id, run.step.index, k, opts.primitive or "parallel"
  if retried then ev.retried, ev.done = ran, #items - #ran end
  run.rec:event("fanout", ev)
end

-- fn over the items ran (indices into items): results and errors by
-- those indices, how many failed, how many the budget left untried.
local function fan_out_some(run, items, ran, fn, opts)
  local sub = {}
  for j, i in ipairs(ran) do sub[j] = items[i] end
  local budget = error_budget(opts.max_errors, #sub)
  -- (a few descriptors a branch: a socket, a process's pipes; the rest for the run)
  require("runbook.sys").nofile(256 + 4 * math.min(opts.limit or 64, #sub))
  run.fanout_depth = (run.fanout_depth or 0) + 1
  local ok, r, e, failed = pcall(fan_out, sub, function(item, j) return fn(item, ran[j]) end,
    opts.limit or 64, budget, opts.is_failure)
  run.fanout_depth = run.fanout_depth - 1
  if not ok then error(r, 0) end
  local untried = budget and failed > budget and mark_untried(sub, r, e, budget) or 0
  local results, errs = {}, {}
  for j, i in ipairs(ran) do results[i], errs[i] = r[j], e[j] end
  return results, errs, failed, untried
end

-- parallel(items, fn, {limit, check, max_errors}): fn(item) concurrently,
-- results in order; outside a task it runs in one of its own.
function verbs.parallel(items, fn, opts)
  if type(items) ~= "table" then errors.usage("parallel: expected a list of items", "parallel") end
  if type(fn) ~= "function" then errors.usage("parallel: expected a function", "parallel") end
  opts = opts or {}
  error_budget(opts.max_errors, #items)
  if not loop.in_task() then
    local res = table.pack(loop.run(verbs.parallel, items, fn, opts))
    if not res[1] then error(errors.from(res[2], "parallel"), 0) end
    return table.unpack(res, 2, res.n)
  end
  local run = context.run() or {}
  local ran, k, retried = fanout_slot(run, items, opts)
  local results, errs, failed, untried = fan_out_some(run, items, ran, fn, opts)
  if loop.interrupts() > 0 then
    errors.raise("interrupted", "parallel: " .. loop.interrupt_text(), { primitive = "parallel" })
  end
  if k then record_fanout(run, k, retried, items, ran, results, errs, opts) end
  if failed > 0 and opts.check ~= false then error(failures(errs, failed, #items, untried), 0) end
  return results, errs
end
api.parallel = verbs.parallel

-- exec, sh, wait.
function verbs.exec(spec)
  return exec_impl("exec", spec)
end

function verbs.sh(cmd, opts)
  if type(cmd) ~= "string" then errors.usage("sh: expected a command string", "sh") end
  local spec = {}
  for k, v in pairs(opts or {}) do spec[k] = v end
  spec[1], spec[2], spec[3] = "/bin/sh", "-c", cmd
  return exec_impl("sh", spec, { cmd }, cmd)
end

function verbs.wait(seconds)
  if type(seconds) ~= "number" or seconds < 0 then errors.usage("wait: expected seconds >= 0", "wait") end
  local ok, err = api.call(context.need("wait"), { primitive = "wait", args = { seconds = seconds },
    perform = function() loop.sleep(seconds) end })
  if not ok then error(err, 0) end
end

-- Every verb above into G, each table a copy of its own (a runbook that
-- changes log.info changes its own).
local function install_verbs(G)
  for k, v in pairs(verbs) do
    if type(v) == "table" then
      local t = {}
      for kk, vv in pairs(v) do t[kk] = vv end
      v = t
    end
    G[k] = v
  end
end

-- pcall and xpcall as a runbook sees them: they let Ctrl-C through.  An
-- author's pcall is for branching on a failure; the operator's interrupt
-- must stop the step (and reach the retry/skip/abort question), never be
-- handled as one more failed check.  They stand for the author's own
-- call: a primitive handed to them directly, as pcall(redis.connect,
-- url), names no line, as with Lua's own pcall.
local function pass_interrupts(r)
  if not r[1] and loop.interrupts() > 0 then error(r[2], 0) end
  return table.unpack(r, 1, r.n)
end

function verbs.pcall(f, ...)
  return pass_interrupts(table.pack(pcall(f, ...)))
end
errors.author_call(verbs.pcall)

function verbs.xpcall(f, handler, ...)
  return pass_interrupts(table.pack(xpcall(f, handler, ...)))
end
errors.author_call(verbs.xpcall)

-- json, env, secret; time and file (surface.lua, files.lua).
local function helper_verbs(run, G)
  local rjson = require("runbook.json")     -- JSON integers decode as integers
  G.json = { encode = rjson.encode, decode = rjson.decode, null = rjson.null }
  function G.env(name, default)
    if type(name) ~= "string" then errors.usage("env: expected a variable name", "env") end
    local v = os.getenv(name)
    if v == nil or v == "" then return default end
    -- as the config's env(): a variable is how a secret reaches a runbook
    return record.secret(v)
  end
  function G.secret(value)
    return require("runbook.record").secret(value)
  end
  function G.checklist(path, opts)      -- a markdown checklist's steps, run here
    return require("runbook.mdrun").checklist(run, path, opts)
  end
  surface.time_verbs(G)
  require("runbook.files")(run, G, api)
end

-- The host's own tests (tests/lua/*.lua) are runbooks that reach into
-- the host: RUNBOOK_TEST_INTERNALS=1 in the process's environment (which
-- the operator, not a runbook, sets) opens os, io, debug and runbook.* to
-- them, and says so on stderr.
local function test_internals(run, G)
  if os.getenv("RUNBOOK_TEST_INTERNALS") ~= "1" then return end
  run.internals = true
  G.os, G.io, G.debug = os, io, debug
  if not api.warned_internals then
    api.warned_internals = true
    ui.eprint("runbook: RUNBOOK_TEST_INTERNALS=1: host internals are open to this runbook (for the host's own tests)")
  end
end

-- A runbook's environment: what docs/authoring.md documents (surface.lua
-- holds the allow list of Lua's own functions), nothing else.
function api.environment(run)
  local env = {}
  local G = {}
  surface.lua_globals(G)
  install_verbs(G)
  helper_verbs(run, G)
  test_internals(run, G)
  G.target = run.target or {}
  run.state = run.state or {}
  G.state = run.state       -- what the steps share: recorded, restored by --resume (runbook.state)
  G.dry_run = run.dry_run and true or false     -- a rehearsal: mutating calls are simulated
  G.require = function(name) return api.require(run, env, name) end
  api.install_primitives(G)
  surface.refuse_globals(G)
  setmetatable(env, { __index = G })
  run.verbs = G
  return env, G
end

-- Where module name is: a stdlib module (stdlib/<name>.lua: host code,
-- loaded privately), or one beside the runbook's file (runbooks/lib/x.lua
-- is "lib.x": author code, in the runbook's environment).  Returns the
-- path and whether it is a stdlib module.
local function module_path(run, name)
  if not name:find(".", 1, true) then
    local path = package.searchpath(name, package.path)
    if path then return path, true end
  end
  local file = run.plan and run.plan.file
  if file then
    return package.searchpath(name, (file:match("^(.*)/[^/]*$") or ".") .. "/?.lua"), false
  end
end

-- One copy per run of a module: loaded into env, its value kept.
local function load_module(run, name, path, env)
  local chunk, err = loadfile(path, "t", env)
  if not chunk then errors.raise("error", err, { primitive = "require" }) end
  local m = chunk(name, path)
  if m == nil then m = true end
  run.modules[name] = m
  return m
end

-- The require a stdlib module gets: "runbook.verbs" is the run's verbs
-- (exec, log, json, target, ...), a primitive's name (http, sql, ssh,
-- notify, ...) that primitive, another stdlib module its run's copy;
-- anything else, the host's runbook.* and Lua's io included, the
-- ordinary require.
function api.module_require(run, name)
  if name == "runbook.verbs" then return run.verbs end
  if run.modules[name] ~= nil then return run.modules[name] end
  if not name:find(".", 1, true) and package.loaded[name] == nil then
    run.primitives = run.primitives or {}
    local prim = run.primitives[name] or surface.primitive(run.verbs, name)
    if prim then
      run.primitives[name] = prim
      return prim
    end
    local path = package.searchpath(name, package.path)
    if path then return load_module(run, name, path, api.module_env(run)) end
  end
  return require(name)
end

function api.module_env(run)
  if not run.module_env then
    run.module_env = surface.module_env(run.verbs, function(name) return api.module_require(run, name) end)
  end
  return run.module_env
end

-- require() in a runbook: a stdlib module (health, pg, tls, ...), run in
-- its own environment with the run's verbs (the same dry run, answers
-- and transcript), or a module of the author's beside the runbook's file,
-- run in the runbook's own environment; one copy per run.  Lua's pure
-- libraries by name; the host's runbook.* internals, os, io, debug and
-- the C libraries are refused with the verb to use instead.
function api.require(run, env, name)
  if type(name) ~= "string" then errors.usage("require: expected a module name", "require") end
  run.modules = run.modules or {}
  if run.modules[name] ~= nil then return run.modules[name] end
  if run.internals and (name:match("^runbook%.") or package.loaded[name] ~= nil) then return require(name) end
  if surface.LIBS[name] then return env[name] end
  local path, stdlib = module_path(run, name)
  local refused = not stdlib and surface.refused_module(name)
  if refused then errors.usage(refused, "require") end
  if path == nil then
    errors.usage(string.format("require(%q): no such module in stdlib/ or beside the runbook", name), "require")
  end
  return load_module(run, name, path, stdlib and api.module_env(run) or env)
end

-- Each stdlib/runbook/prim/<name>.lua returns the value of the global
-- <name> (http, sql, ...), its methods defined once in the module and
-- finding their run through runbook.context: adding a primitive is adding
-- its files.  A primitive is installed the first time a runbook names it,
-- so a run that never does pays neither for compiling its Lua nor for
-- loading its C library.  A table is copied into each environment, so a
-- runbook that changes its http.get changes its own.
function api.install_primitives(G)
  local sys = require("runbook.sys")
  local pending = {}
  for _, f in ipairs(sys.listdir(sys.datadir() .. "/stdlib/runbook/prim") or {}) do
    local name = f:match("^([%w_]+)%.lua$")
    if name then pending[name] = true end
  end
  setmetatable(G, { __index = function(_, key)
    if not pending[key] then return nil end
    pending[key] = nil
    local value = require("runbook.prim." .. key)
    if type(value) == "table" then
      local copy = {}
      for k, v in pairs(value) do copy[k] = v end
      value = setmetatable(copy, getmetatable(value))
    end
    rawset(G, key, value)
    return value
  end })
end

-- The table a step function receives: declared params only, read-only.
function api.params_proxy(plan, values)
  return setmetatable({}, {
    __index = function(_, k)
      if plan.params[k] == nil then
        errors.usage(string.format("undeclared param %q (declare it with param(%q, {...}))", tostring(k),
          tostring(k)), "params")
      end
      return values[k]
    end,
    __newindex = function(_, k)
      errors.usage(string.format("params are read-only (tried to set %q)", tostring(k)), "params")
    end,
    __pairs = function() return next, values, nil end,
  })
end

return api
