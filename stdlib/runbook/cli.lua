-- runbook.cli: the subcommands.  C parses the options (src/cmd_*.c); each
-- function here gets the parsed table and returns the exit code.
local answers = require("runbook.answers")
local config = require("runbook.config")
local engine = require("runbook.engine")
local loop = require("runbook.loop")
local operator = require("runbook.operator")
local record = require("runbook.record")
local sys = require("runbook.sys")
local transcript = require("runbook.transcript")
local ui = require("runbook.ui")

local cli = {}

local function fail(code, fmt, ...)
  ui.eprint(ui.style("red", "runbook: ") .. string.format(fmt, ...))
  return code
end

-- Where NAME is looked up: ./runbooks, $RUNBOOK_PATH, the share dir.
function cli.search_dirs()
  local dirs = { "./runbooks" }
  for d in (os.getenv("RUNBOOK_PATH") or ""):gmatch("[^:]+") do dirs[#dirs + 1] = d end
  dirs[#dirs + 1] = sys.datadir() .. "/runbooks"
  return dirs
end

local function is_file(path)
  local st = sys.stat(path)
  return st ~= nil and st.type == "file"
end

-- A path for NAME|FILE, or nil and a message saying where it looked.
function cli.resolve(name)
  if name:find("/") or name:match("%.lua$") then
    if is_file(name) then return name end
    return nil, string.format("no runbook file %s", name)
  end
  for _, dir in ipairs(cli.search_dirs()) do
    local path = dir .. "/" .. name .. ".lua"
    if is_file(path) then return path end
  end
  return nil, string.format("no runbook named %q in %s", name, table.concat(cli.search_dirs(), ", "))
end

local function load_plan(name, fields)
  local path, err = cli.resolve(name)
  if not path then return nil, err end
  local run = engine.new_run(fields)
  local plan, lerr = engine.declare(run, path)
  if not plan then return nil, "load error: " .. lerr end
  return run, plan
end

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

-- --resume: the old run's point, checked to be a run of this runbook.
local function resume_info(args, name)
  if not args.resume then return nil end
  local resume = engine.resume_point(args.resume)
  local resolved = cli.resolve(name)
  -- run.start records the file's realpath: compare like with like.
  if name ~= resume.runbook and (resolved == nil or sys.realpath(resolved) ~= resume.file) then
    engine.usage_error("--resume: %s is a transcript of runbook %q, not %q", args.resume, resume.runbook, name)
  end
  return resume
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

-- The first step: --start-at, or the one after the last step that ended ok.
local function first_step(args, plan, resume)
  local first = 1
  if args["start-at"] then first = engine.find_step(plan, args["start-at"]) end
  if resume and resume.last_ok then
    first = resume.last_ok.index + 1
    for _, s in ipairs(plan.steps) do
      if s.id == resume.last_ok.id then first = s.index + 1 end
    end
  end
  return first
end

local function prepare(args)
  local name = args[1]
  if name == nil and args.resume then
    name = engine.resume_point(args.resume).file   -- the transcript knows which file it ran
  end
  if name == nil then engine.usage_error("run: which runbook? (runbook run NAME|FILE; 'runbook list' shows them)") end
  if args[2] ~= nil then engine.usage_error("run: one runbook at a time (got %q too)", args[2]) end
  local fields = run_fields(args)
  local resume = resume_info(args, name)
  local target_name = args.target or (resume and resume.target)
  if target_name then
    local t, terr = config.target(fields.config, target_name)
    if not t then engine.usage_error("%s", terr) end
    fields.target = t
  end
  local run, plan = load_plan(name, fields)
  if not run then engine.usage_error("%s", plan) end
  local given = parse_params(args.param)
  if resume then carry_params(run, resume, given) end
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

local function start_record(run, plan, args, first)
  local rec, err = record.open(plan.name, args.transcript)
  if not rec then engine.usage_error("%s", err) end
  run.rec = rec
  rec:event("run.start", {
    runbook = plan.name, title = plan.header.title, severity = plan.header.severity,
    file = sys.realpath(plan.file) or plan.file, operator = operator.username(),
    host = operator.hostname(), argv = recorded_argv(plan, args), dry_run = run.dry_run,
    scenario = args.scenario,
    target = run.target and run.target.name, start_at = first > 1 and first or nil,
    resumed_from = run.resume_from and { transcript = args.resume, run = run.resume_from.run,
      last_hash = run.resume_from.hash } or nil,
    pid = sys.getpid(), version = require("runbook.host").version,
  })
  for _, p in ipairs(plan.param_list) do
    local v = run.params[p.name]
    rec:event("param", { name = p.name, value = p.secret and v ~= nil and "***" or v,
      secret = p.secret or nil, source = run.param_sources[p.name] })
  end
  rec:sync()
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
  return fail(engine.exit_code("terminated"), "%s before the run started: nothing was run", name)
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

function cli.run(args)
  local ok, run, plan, first = pcall(prepare, args)
  if not ok then
    if loop.terminated() then return terminated_early() end
    if getmetatable(run) == engine.UsageError then return fail(2, "%s", run.message) end
    return fail(2, "%s", tostring(run))
  end
  local okr, rerr = pcall(start_record, run, plan, args, first)
  if not okr then return fail(2, "%s", tostring(rerr)) end
  local rec = run.rec
  local h = plan.header
  ui.print(ui.style("bold", "runbook " .. plan.name) .. (h.title and (": " .. h.title) or "") ..
    (h.severity and ui.style("yellow", " [" .. h.severity .. "]") or ""))
  ui.print(ui.style("dim", "transcript: " .. rec.path))
  if run.dry_run then ui.print(ui.style("magenta", "DRY RUN: mutating actions are shown, not run")) end
  if run.scenario then ui.print(ui.style("magenta", "SCENARIO: " .. args.scenario .. " replaces matching calls")) end
  if run.resume_from then
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

function cli.show(args)
  if args[1] == nil then return fail(2, "show: which runbook? (runbook show NAME|FILE)") end
  local run, plan = load_plan(args[1])
  if not run then return fail(2, "%s", plan) end
  local h = plan.header
  ui.print(ui.style("bold", plan.name) .. (h.title and (": " .. h.title) or "") ..
    (h.severity and (" [" .. h.severity .. "]") or ""))
  if h.description then ui.print(h.description) end
  ui.print("file: " .. plan.file)
  if #plan.param_list > 0 then
    ui.print("\nparams:")
    for _, p in ipairs(plan.param_list) do
      local notes = {}
      if p.required then notes[#notes + 1] = "required" end
      if p.secret then notes[#notes + 1] = "secret" end
      if p.default ~= nil then notes[#notes + 1] = "default " .. (p.secret and "***" or tostring(p.default)) end
      if p.choices then notes[#notes + 1] = "one of " .. table.concat(p.choices, "|") end
      ui.print(string.format("  %-12s %s%s", p.name, p.help or "",
        #notes > 0 and (" (" .. table.concat(notes, ", ") .. ")") or ""))
    end
  end
  ui.print("\nsteps:")
  for _, s in ipairs(plan.steps) do
    local notes = { "id " .. s.id }
    if s.dangerous then notes[#notes + 1] = "dangerous" end
    if s.timeout then notes[#notes + 1] = "timeout " .. s.timeout .. " s" end
    if s.verify then notes[#notes + 1] = "verified" end
    if s.undo then notes[#notes + 1] = "has undo" end
    ui.print(string.format("  %2d. [ ] %s  %s", s.index, s.title,
      ui.style("dim", "(" .. table.concat(notes, ", ") .. ")")))
  end
  return 0
end

-- Lines of a file, for the static checks.
local function file_lines(path)
  local lines = {}
  local f = io.open(path, "r")
  if not f then return lines end
  for l in f:lines() do lines[#lines + 1] = l end
  f:close()
  return lines
end

-- Uses of undeclared params: p.name or p["name"] in a step's functions,
-- where p is the function's first parameter.
local function undeclared_uses(plan, fn, lines, problems)
  local pname = debug.getlocal(fn, 1)
  if pname == nil then return end
  local info = debug.getinfo(fn, "S")
  for ln = info.linedefined, info.lastlinedefined do
    local text = (lines[ln] or ""):gsub("%-%-.*$", "")
    for key in text:gmatch("%f[%w_]" .. pname .. "%s*%.%s*([%a_][%w_]*)") do
      if plan.params[key] == nil then
        problems[#problems + 1] = string.format("%s:%d: undeclared param %q (declare it with param(%q, {...}))",
          plan.file, ln, key, key)
      end
    end
    for key in text:gmatch("%f[%w_]" .. pname .. "%s*%[%s*[\"']([^\"']+)[\"']%s*%]") do
      if plan.params[key] == nil then
        problems[#problems + 1] = string.format("%s:%d: undeclared param %q", plan.file, ln, key)
      end
    end
  end
end

function cli.check_file(name)
  local run, plan = load_plan(name)
  if not run then return { plan } end
  local problems = {}
  local lines = file_lines(plan.file)
  require("runbook.lint").check_file(plan.file, problems)   -- what a runbook is not offered
  if #plan.steps == 0 then problems[#problems + 1] = plan.file .. ": no steps declared" end
  if next(plan.header) == nil then
    problems[#problems + 1] = plan.file .. ": no runbook{name=, title=, severity=} header"
  end
  for _, s in ipairs(plan.steps) do
    for _, fn in ipairs({ s.fn, s.verify or false, s.undo or false }) do
      if fn then undeclared_uses(plan, fn, lines, problems) end
    end
  end
  for _, p in ipairs(plan.param_list) do
    if p.required and p.default ~= nil then
      problems[#problems + 1] = string.format("%s:%d: param %q is required and has a default",
        plan.file, p.line, p.name)
    end
  end
  return problems, plan
end

function cli.check(args)
  if args[1] == nil then return fail(2, "check: which runbook? (runbook check NAME|FILE...)") end
  local bad = 0
  for i = 1, #args do
    local problems, plan = cli.check_file(args[i])
    for _, p in ipairs(problems) do ui.eprint(p) end
    if #problems > 0 then
      bad = bad + 1
    else
      ui.print(string.format("ok: %s (%d steps, %d params)", plan.file, #plan.steps, #plan.param_list))
    end
  end
  return bad > 0 and 2 or 0
end

function cli.list(args)
  if args[1] ~= nil then return fail(2, "list: takes no arguments") end
  local seen, rows = {}, {}
  for _, dir in ipairs(cli.search_dirs()) do
    for _, f in ipairs(sys.listdir(dir) or {}) do
      local name = f:match("^(.+)%.lua$")
      if name and not seen[name] then
        seen[name] = true
        local run, plan = load_plan(dir .. "/" .. f)
        if run then
          rows[#rows + 1] = { name, plan.header.severity or "-", plan.header.title or "", dir }
        else
          rows[#rows + 1] = { name, "?", "(" .. plan .. ")", dir }
        end
      end
    end
  end
  if #rows == 0 then
    ui.print("no runbooks found in " .. table.concat(cli.search_dirs(), ", "))
    return 0
  end
  ui.print(ui.style("bold", string.format("%-20s %-4s %s", "NAME", "SEV", "TITLE")))
  for _, r in ipairs(rows) do
    ui.print(string.format("%-20s %-4s %s %s", r[1], r[2], r[3], ui.style("dim", "(" .. r[4] .. ")")))
  end
  return 0
end

local SKELETON = [[
-- %s: what this runbook is for, in one line.
-- Run it with `runbook run %s`; rehearse it with `runbook run %s --dry-run`.

runbook {
  name = "%s",
  title = "Describe the incident this runbook handles",
  severity = "P2",            -- P0 outage ... P3 cosmetic
  description = "When to use it, and what it changes.",
}

-- Inputs: -p service=NAME on the command line, else the default.
param("service", { help = "the service to act on", default = "example" })

step("Look before touching anything", function(p)
  -- Read-only commands run even in --dry-run when marked readonly.
  local r = exec { "uname", "-a", readonly = true }
  log.info("host: %%s, service %%s", r.stdout:gsub("%%s+$", ""), p.service)
end)

step("Ask before the risky part", function(p)
  confirm("Go ahead with the change to " .. p.service .. "?")
end)

step("Make the change", { dangerous = true, timeout = 120 }, function(p)
  -- exec takes argv (no shell); sh("...") when you need one.
  exec { "true" }
end)
]]

function cli.new(args)
  local name = args[1]
  if name == nil then return fail(2, "new: which name? (runbook new NAME)") end
  if not name:match("^[%w][%w%-_]*$") then
    return fail(2, "new: %q is not a valid name (letters, digits, '-', '_')", name)
  end
  local dir = args.dir or "runbooks"
  local path = dir .. "/" .. name .. ".lua"
  if is_file(path) and not args.force then
    return fail(2, "new: %s exists (use --force to overwrite)", path)
  end
  local ok, err = pcall(sys.mkdirs, dir, 493)   -- 0755
  if not ok then return fail(2, "new: %s", tostring(err)) end
  local f, ferr = io.open(path, "w")
  if not f then return fail(2, "new: cannot write %s: %s", path, ferr) end
  f:write(string.format(SKELETON, name, name, name, name))
  f:close()
  ui.print("wrote " .. path .. "; check it with: runbook check " .. path)
  return 0
end

-- --expect-hash given and not the last line's: say what the file holds
-- instead, since "missing lines" and "lines added after" need different
-- follow-ups in an incident.
local function expect_mismatch(path, res, want)
  if res.expect_line then
    local after = res.lines - res.expect_line
    return string.format("%s: the expected hash is line %d's of %d: %d line(s) after the expected " ..
      "final hash (added after it was taken); the last line's hash is %s", path, res.expect_line,
      res.lines, after, res.last_hash)
  end
  return string.format("%s: no line has the expected hash %s: lines are missing at the end, or this " ..
    "is another run's transcript (%d lines, last hash %s)", path, want, res.lines, res.last_hash)
end

function cli.verify(args)
  local path = args[1]
  if path == nil then return fail(2, "verify: which transcript? (runbook verify FILE)") end
  if args[2] ~= nil then return fail(2, "verify: one transcript at a time (got %q too)", args[2]) end
  local want = args["expect-hash"]
  if want ~= nil then
    want = want:lower()
    if not want:match("^" .. string.rep("%x", 64) .. "$") then
      return fail(2, "verify: --expect-hash: expected the 64 hex digits of a final hash, got %q", args["expect-hash"])
    end
  end
  local ok, res = transcript.verify(path, { expect = want })
  if ok == nil then return fail(2, "verify: %s", res.reason or ("cannot read " .. path)) end
  if not ok then
    if res.bad_line == 0 then
      ui.eprint(string.format("%s: %s", path, res.reason))
      return 1
    end
    ui.eprint(string.format("%s:%d: %s", path, res.bad_line, res.reason))
    if res.lines > 0 then
      ui.eprint(string.format("%d line(s) before it verify; last good hash %s", res.lines, res.last_hash))
    end
    return 1
  end
  if want and want ~= res.last_hash then
    ui.eprint(expect_mismatch(path, res, want))
    return 1
  end
  ui.print(string.format("ok: %s: %d lines, hash chain intact", path, res.lines))
  ui.print("final hash: " .. res.last_hash)
  if not res.ended then
    ui.print("note: no run.end event: the run did not finish (killed, or still running)")
  end
  return 0
end

function cli.report(args)
  if args[1] == nil then return fail(2, "report: which transcripts? (runbook report FILE...)") end
  local report = require("runbook.report")
  local runs, err = report.load(args)
  if not runs then return fail(2, "report: %s", err) end
  local text = report.markdown(runs, { title = args.title })
  if args.output then
    local f, ferr = io.open(args.output, "w")
    if not f then return fail(2, "report: cannot write %s: %s", args.output, ferr) end
    -- Like the transcript, 0600: a report holds incident details.  Set
    -- before the first byte is written.
    local okm, merr = pcall(sys.chmod, args.output, 384)
    if not okm then f:close(); return fail(2, "report: %s", tostring(merr)) end
    local okw, werr = f:write(text, "\n")
    local okc, cerr = f:close()
    if not okw or not okc then
      return fail(1, "report: cannot write %s: %s", args.output, tostring(werr or cerr))
    end
    ui.print("wrote " .. args.output)
  else
    operator.write(text, "\n")
  end
  return 0
end

return cli
