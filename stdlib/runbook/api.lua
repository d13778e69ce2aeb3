-- runbook.api: the globals a runbook (and the REPL) sees.
--
-- api.environment(run) returns a fresh environment bound to one run.  The
-- declaration verbs (runbook, param, step) only register into run.plan;
-- the primitives refuse to run until run.phase is "execute".
--
-- The error contract, written down once: a primitive that fails raises a
-- Lua error whose message says what failed, where, and what to check,
-- prefixed with the runbook's file:line.  The step engine turns any error
-- into the operator's retry/skip/abort; an author who wants to branch on
-- a failure uses pcall, which lets Ctrl-C through.  confirm() raises a
-- "declined" error object.
local cjson = require("cjson")
local cexec = require("runbook.exec")
local loop = require("runbook.loop")
local record = require("runbook.record")
local ui = require("runbook.ui")

local api = {}

local SEVERITIES = { P0 = true, P1 = true, P2 = true, P3 = true }

-- The error object confirm() raises when the operator says no.
api.Declined = {}
api.Declined.__index = api.Declined
api.Declined.__tostring = function(d) return "declined: " .. d.question end

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
    d = d()
    spec.describe = d
  end
  return d
end

-- Record a primitive call and raise or return.  spec: {primitive=, args=,
-- mutating=, describe= (text, or a function returning it), perform=fn() -> result, stand_in=fn() -> result,
-- summary=fn(result) -> fields, complete=fn(result) -> result (fills in a
-- scenario's partial result), secret= (the call's secret = true), mark=fn(result)
-- (marks a secret call's result)}.  A --scenario rule matching the call
-- replaces it; else a mutating call in a dry run is simulated; else it is
-- performed.  The result of a secret call is marked before its event is
-- recorded, and the event says secret = true; its summary (the
-- primitive's) holds no output.  Returns ok, result_or_error.
function api.call(run, spec)
  if run.phase ~= "execute" then
    return false, string.format("%s: cannot run while the runbook is being declared; " ..
      "call it inside a step function", spec.primitive)
  end
  local fields = { primitive = spec.primitive, args = spec.args, step = run.step and run.step.id,
    secret = spec.secret or nil }
  local rule = run.scenario and run.scenario:match(spec.primitive, api.describe(spec), run.step)
  if rule then
    ui.print("  " .. ui.style("magenta", "scenario:") .. " " .. api.describe(spec) .. " -> " ..
      (spec.secret and "(result not shown: secret = true)" or rule.summary))
    fields.outcome = rule.error and "error" or "ok"
    fields.scenario = rule.name
    fields.error = rule.error
    fields.result = not spec.secret and rule.result or nil
    if run.rec then run.rec:event("call", fields) end
    if rule.error then return false, spec.primitive .. ": " .. rule.error end
    local result = rule.copy()
    if spec.complete then result = spec.complete(result) end
    if spec.secret and spec.mark then spec.mark(result) end
    return true, result
  end
  if run.dry_run and spec.mutating then
    ui.print("  " .. ui.style("magenta", "would run:") .. " " .. api.describe(spec))
    fields.outcome = "simulated"
    fields.dry_run = true
    if run.rec then run.rec:event("call", fields) end
    return true, spec.stand_in()
  end
  local t0 = loop.now()
  local ok, res = pcall(spec.perform)
  fields.duration = loop.now() - t0
  if ok then
    fields.outcome = "ok"
    if spec.secret and spec.mark then spec.mark(res) end
    if spec.summary then fields.result = spec.summary(res) end
  else
    fields.outcome = "error"
    fields.error = tostring(res)
  end
  if run.rec then run.rec:event("call", fields) end
  return ok, res
end

-- Raise err at the caller of the primitive (the runbook's line), unless it
-- is already an error object.
local function raise(err, level)
  if type(err) ~= "string" then error(err, 0) end
  error(err, (level or 1) + 2)
end
api.raise = raise

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

local function exec_impl(run, primitive, spec, display_argv, display)
  if type(spec) ~= "table" then raise(primitive .. ": expected a table {argv..., timeout=}", 2) end
  local argv = {}
  for i = 1, #spec do argv[i] = tostring(spec[i]) end
  if #argv == 0 then raise(primitive .. ": no command given", 2) end
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
  if not ok then raise(res, 2) end
  if spec.check ~= false and res.code ~= 0 then
    raise(string.format("%s %s: exited with code %d%s%s", primitive, display or argv[1], res.code,
      res.signal and (" (" .. res.signal .. ")") or "", api.failure_detail(res, secret)), 2)
  end
  return res
end

-- The ask wrappers record every question and its answer.
local function asked(run, kind, question, answer, source, secret)
  if run.rec then
    run.rec:event(kind, { question = question, answer = secret and "***" or answer,
      source = source, step = run.step and run.step.id })
  end
end

local function question_ctx(run)
  return { answers = run.answers, yes = run.yes, interactive = run.interactive, step = run.step }
end

local function check_question(name, q)
  -- level 2: check_question, then the primitive, then the runbook's line
  if type(q) ~= "string" or q == "" then raise(name .. ": the question must be a non-empty string", 2) end
end

-- runbook{...}: the header, once.
local function header_verb(plan, G)
  function G.runbook(header)
    if type(header) ~= "table" then raise("runbook{}: expected a table {name=, title=, severity=}", 1) end
    if plan.header then raise("runbook{}: the header is declared twice", 1) end
    for _, k in ipairs({ "name", "title", "description" }) do
      if header[k] ~= nil and type(header[k]) ~= "string" then
        raise(string.format("runbook{}: %s must be a string", k), 1)
      end
    end
    if header.severity ~= nil and not SEVERITIES[header.severity] then
      raise(string.format("runbook{}: severity %q is not one of P0, P1, P2, P3", tostring(header.severity)), 1)
    end
    plan.header = header
  end
end

-- param(name, {help, default, required, secret, choices}): an input.
local function param_verb(run, G)
  local plan = run.plan
  function G.param(name, spec)
    if run.phase ~= "declare" then raise("param: only at the top level of a runbook", 1) end
    if type(name) ~= "string" or not name:match("^[%a_][%w_]*$") then
      raise("param: the name must be an identifier (letters, digits, _)", 1)
    end
    spec = spec or {}
    if type(spec) ~= "table" then raise("param: options must be a table", 1) end
    if plan.params[name] then raise(string.format("param %q is declared twice", name), 1) end
    if spec.choices ~= nil and type(spec.choices) ~= "table" then
      raise(string.format("param %q: choices must be a list", name), 1)
    end
    local p = { name = name, help = spec.help, default = spec.default, required = spec.required,
      secret = spec.secret, choices = spec.choices, line = debug.getinfo(2, "l").currentline }
    plan.params[name] = p
    plan.param_list[#plan.param_list + 1] = p
  end
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
local function step_verb(run, G)
  local plan = run.plan
  function G.step(title, opts, fn)
    if run.phase ~= "declare" then raise("step: only at the top level of a runbook", 1) end
    if type(opts) == "function" then opts, fn = {}, opts end
    if type(title) ~= "string" or title == "" then raise("step: the title must be a non-empty string", 1) end
    if type(opts) ~= "table" then raise("step: options must be a table", 1) end
    if type(fn) ~= "function" then raise(string.format("step %q: missing its function", title), 1) end
    local id, misuse = step_id(plan, title, opts)
    if not id then raise(misuse, 1) end
    plan.steps[#plan.steps + 1] = { index = #plan.steps + 1, title = title, id = id,
      fn = fn, dangerous = opts.dangerous and true or false, timeout = opts.timeout,
      verify = opts.verify, undo = opts.undo, requires = opts.requires,
      line = debug.getinfo(2, "l").currentline }
  end
end

-- The declaration verbs: runbook{}, param, step, requirement.
local function declaration_verbs(run, G)
  header_verb(run.plan, G)
  param_verb(run, G)
  step_verb(run, G)
  require("runbook.requires").verb(run, G)
end

-- choose(): the question with its numbered list, and the parser of an
-- answer, a number of the list or one of its values as written.
local function choice_prompt(question, list)
  local lines = { question }
  for i, v in ipairs(list) do lines[#lines + 1] = string.format("    %d) %s", i, tostring(v)) end
  return table.concat(lines, "\n") .. "\n  choice [1-" .. #list .. "]: "
end

local function choice_parser(list)
  return function(text)
    text = text:match("^%s*(.-)%s*$")
    local n = tonumber(text)
    if n and list[n] ~= nil then return list[n] end
    for _, v in ipairs(list) do if tostring(v) == text then return v end end
    return nil, "choose a number from 1 to " .. #list
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
local function question_verbs(run, G)
  function G.confirm(question)
    check_question("confirm", question)
    local yes, source = ui.ask { ctx = question_ctx(run), question = question,
      prompt = question .. " [y/n] ", parse = ui.parse_yesno, confirmation = true }
    asked(run, "confirm", question, yes and "yes" or "no", source)
    if not yes then error(setmetatable({ question = question }, api.Declined), 0) end
    return true
  end

  function G.yesno(question)
    check_question("yesno", question)
    local yes, source = ui.ask { ctx = question_ctx(run), question = question,
      prompt = question .. " [y/n] ", parse = ui.parse_yesno }
    asked(run, "prompt", question, yes and "yes" or "no", source)
    return yes
  end

  function G.choose(question, list, opts)
    check_question("choose", question)
    if type(list) ~= "table" or #list == 0 then raise("choose: expected a non-empty list of choices", 1) end
    opts = opts or {}
    local value, source = ui.ask { ctx = question_ctx(run), question = question,
      prompt = choice_prompt(question, list), default = opts.default, parse = choice_parser(list) }
    asked(run, "prompt", question, tostring(value), source)
    return value
  end

  function G.prompt(question, opts)
    check_question("prompt", question)
    opts = opts or {}
    local hint = opts.default and not opts.secret and (" [" .. tostring(opts.default) .. "]") or ""
    local value, source = ui.ask { ctx = question_ctx(run), question = question,
      prompt = question .. hint .. ": ", secret = opts.secret, default = opts.default,
      parse = prompt_parser(opts) }
    if opts.secret then require("runbook.record").secret(value) end
    asked(run, "prompt", question, value, source, opts.secret)
    return value
  end

  function G.manual(instruction)
    check_question("manual", instruction)
    local done, source = ui.ask { ctx = question_ctx(run), question = instruction,
      prompt = ui.style("yellow", "[manual] ") .. instruction .. "\n  done? [Enter = done, n = not done] ",
      confirmation = true, parse = parse_manual }
    asked(run, "manual", instruction, done and "done" or "not done", source)
    if not done then error(setmetatable({ question = instruction }, api.Declined), 0) end
    return true
  end
end

-- log.info/warn/error and print: shown and recorded.
local function logging_verbs(run, G)
  local function logger(level)
    return function(fmt, ...)
      local msg = select("#", ...) > 0 and string.format(fmt, ...) or tostring(fmt)
      ui.log(level, msg)
      if run.rec then run.rec:event("log", { level = level, message = msg, step = run.step and run.step.id }) end
    end
  end
  G.log = { info = logger("info"), warn = logger("warn"), error = logger("error") }
  G.print = function(...)
    local parts = table.pack(...)
    for i = 1, parts.n do parts[i] = tostring(parts[i]) end
    local msg = table.concat(parts, "\t", 1, parts.n)
    ui.print(msg)
    if run.rec then run.rec:event("log", { level = "print", message = msg, step = run.step and run.step.id }) end
  end
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
local function poll_verb(run)
  return function(fn, opts)
    if type(fn) ~= "function" then raise("poll: expected a function", 1) end
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
        raise(msg, 1)
      end
      local ok, err = pcall(loop.sleep, every)
      if not ok then raise(err, 1) end
    end
  end
end

-- fn(item, i) for every item, at most limit at a time, each in a task of
-- the loop, until Ctrl-C: the results and errors by index, and how many
-- failed.
local function fan_out(items, fn, limit)
  local n = #items
  local results, errors, failed, nexti = {}, {}, 0, 0
  local function worker()
    while loop.interrupts() == 0 do
      nexti = nexti + 1
      local i = nexti
      if i > n then return end
      local ok, r = pcall(fn, items[i], i)
      if ok then results[i] = r else errors[i] = r; failed = failed + 1 end
    end
  end
  for _ = 1, math.min(limit, n) do loop.spawn(worker) end
  loop.join()
  return results, errors, failed
end

-- "parallel: 2 of 5 failed: [1] ...; [4] ...", the first three errors.
local function failures(errors, failed, n)
  local msgs = {}
  for i = 1, n do
    if errors[i] ~= nil and #msgs < 3 then
      msgs[#msgs + 1] = string.format("[%d] %s", i, tostring(errors[i]))
    end
  end
  return string.format("parallel: %d of %d failed: %s%s", failed, n, table.concat(msgs, "; "),
    failed > #msgs and "; ..." or "")
end

-- parallel(items, fn, {limit, check}): fn(item) concurrently, results in
-- order; outside a task it runs in one of its own.
local function parallel(items, fn, opts)
  if type(items) ~= "table" then raise("parallel: expected a list of items", 1) end
  if type(fn) ~= "function" then raise("parallel: expected a function", 1) end
  opts = opts or {}
  if not loop.in_task() then
    local res = table.pack(loop.run(parallel, items, fn, opts))
    if not res[1] then raise(res[2], 1) end
    return table.unpack(res, 2, res.n)
  end
  local n = #items
  local results, errors, failed = fan_out(items, fn, opts.limit or 64)
  if loop.interrupts() > 0 then raise("parallel: " .. loop.interrupt_text(), 1) end
  if failed > 0 and opts.check ~= false then raise(failures(errors, failed, n), 1) end
  return results, errors
end

-- exec, sh, wait, poll, parallel.
local function process_verbs(run, G)
  -- (no tail calls into exec_impl: the caller's frame names the line)
  function G.exec(spec)
    local r = exec_impl(run, "exec", spec)
    return r
  end

  function G.sh(cmd, opts)
    if type(cmd) ~= "string" then raise("sh: expected a command string", 1) end
    local spec = {}
    for k, v in pairs(opts or {}) do spec[k] = v end
    spec[1], spec[2], spec[3] = "/bin/sh", "-c", cmd
    local r = exec_impl(run, "sh", spec, { cmd }, cmd)
    return r
  end

  function G.wait(seconds)
    if type(seconds) ~= "number" or seconds < 0 then raise("wait: expected seconds >= 0", 1) end
    local ok, err = api.call(run, { primitive = "wait", args = { seconds = seconds },
      perform = function() loop.sleep(seconds) end })
    if not ok then raise(err, 1) end
  end

  G.poll = poll_verb(run)
  G.parallel = parallel
end

-- pcall and xpcall as a runbook sees them: they let Ctrl-C through.  An
-- author's pcall is for branching on a failure; the operator's interrupt
-- must stop the step (and reach the retry/skip/abort question), never be
-- handled as one more failed check.
local function protected_calls(G)
  local function pass_interrupts(r)
    if not r[1] and loop.interrupts() > 0 then error(r[2], 0) end
    return table.unpack(r, 1, r.n)
  end
  function G.pcall(f, ...)
    return pass_interrupts(table.pack(pcall(f, ...)))
  end
  function G.xpcall(f, handler, ...)
    return pass_interrupts(table.pack(xpcall(f, handler, ...)))
  end
end

-- json, env, secret.
local function helper_verbs(G)
  G.json = { encode = cjson.encode, decode = cjson.decode, null = cjson.null }
  function G.env(name, default)
    if type(name) ~= "string" then raise("env: expected a variable name", 1) end
    local v = os.getenv(name)
    if v == nil or v == "" then return default end
    -- as the config's env(): a variable is how a secret reaches a runbook
    return record.secret(v)
  end
  function G.secret(value)
    return require("runbook.record").secret(value)
  end
end

function api.environment(run)
  local env = {}
  local G = {}
  for _, k in ipairs({ "assert", "error", "ipairs", "next", "pairs", "pcall", "select",
      "tonumber", "tostring", "type", "xpcall", "setmetatable", "getmetatable", "rawequal",
      "rawget", "rawset", "rawlen", "string", "table", "math", "os", "io", "utf8",
      "coroutine", "require", "_VERSION" }) do
    G[k] = _G[k]
  end
  declaration_verbs(run, G)
  question_verbs(run, G)
  logging_verbs(run, G)
  process_verbs(run, G)
  protected_calls(G)
  helper_verbs(G)
  G.target = run.target or {}
  run.state = run.state or {}
  G.state = run.state       -- what the steps share: recorded, restored by --resume (runbook.state)
  G.dry_run = run.dry_run and true or false     -- a rehearsal: mutating calls are simulated
  G.require = function(name) return api.require(run, env, name) end
  api.install_primitives(run, G)
  setmetatable(env, { __index = G })
  return env, G
end

-- require() in a runbook: a module of stdlib/ (health, pg, tls, ...), or
-- one beside the runbook's file (runbooks/lib/x.lua is require("lib.x")), is
-- loaded into the runbook's own environment, so it calls the same
-- primitives (and the same dry run, answers and transcript) as the runbook;
-- one copy per run.  The host's own runbook.* modules and C libraries come
-- from the ordinary require.
function api.require(run, env, name)
  if type(name) ~= "string" then raise("require: expected a module name", 2) end
  run.modules = run.modules or {}
  if run.modules[name] ~= nil then return run.modules[name] end
  if name:match("^runbook%.") or package.loaded[name] ~= nil then return require(name) end
  local path = package.searchpath(name, package.path)
  local file = run.plan and run.plan.file
  if path == nil and file then   -- a module beside the runbook: runbooks/lib/x.lua is "lib.x"
    path = package.searchpath(name, (file:match("^(.*)/[^/]*$") or ".") .. "/?.lua")
  end
  if path == nil then return require(name) end
  local chunk, err = loadfile(path, "t", env)
  if not chunk then error(err, 2) end
  local m = chunk(name, path)
  if m == nil then m = true end
  run.modules[name] = m
  return m
end

-- Each stdlib/runbook/prim/<name>.lua returns install(run, G, api), which
-- adds the global <name> (http, sql, ...): adding a primitive is adding its
-- files.  A primitive is installed the first time a runbook names it, so a
-- run that never does pays neither for compiling its Lua nor for loading
-- its C library.
function api.install_primitives(run, G)
  local sys = require("runbook.sys")
  local pending = {}
  for _, f in ipairs(sys.listdir(sys.datadir() .. "/stdlib/runbook/prim") or {}) do
    local name = f:match("^([%w_]+)%.lua$")
    if name then pending[name] = true end
  end
  setmetatable(G, { __index = function(_, key)
    if not pending[key] then return nil end
    pending[key] = nil
    require("runbook.prim." .. key)(run, G, api)
    return rawget(G, key)
  end })
end

-- The table a step function receives: declared params only, read-only.
function api.params_proxy(plan, values)
  return setmetatable({}, {
    __index = function(_, k)
      if plan.params[k] == nil then
        error(string.format("undeclared param %q (declare it with param(%q, {...}))", tostring(k), tostring(k)), 2)
      end
      return values[k]
    end,
    __newindex = function(_, k) error(string.format("params are read-only (tried to set %q)", tostring(k)), 2) end,
    __pairs = function() return next, values, nil end,
  })
end

return api
