-- runbook.repl: what `runbook repl` evaluates, prints and records.
--
-- The command is stdlib/runbook/cmd/repl.lua; src/lineedit.c reads the lines
-- (libedit on a terminal) and keeps the chunk being typed; this module owns
-- the run behind the prompt.  The REPL is one
-- run like any other: a transcript with run.start, one `eval` event per
-- evaluation (the code, its printed result or error, its duration) between
-- the `call` and `log` events of what it did, and run.end.  Globals set at
-- the prompt persist in the run's environment; locals end with their chunk,
-- as in Lua's own lua.c.
local api = require("runbook.api")
local config = require("runbook.config")
local engine = require("runbook.engine")
local loop = require("runbook.loop")
local operator = require("runbook.operator")
local pretty = require("runbook.pretty")
local record = require("runbook.record")
local sys = require("runbook.sys")
local transcript = require("runbook.transcript")
local ui = require("runbook.ui")

local repl = {}
repl.__index = repl

local RESULT_MAX = 4096     -- bytes of a printed result kept in the eval event
local CHUNKNAME = "=repl"   -- error positions read "repl:2: ..."
local EOF_MARK = "<eof>"    -- a syntax error ending here: the chunk goes on

-- Where the line history is kept: $XDG_STATE_HOME/runbook/repl_history,
-- else ~/.local/state/runbook/repl_history.
function repl.history_path()
  local state = os.getenv("XDG_STATE_HOME")
  if state == nil or state == "" then state = (os.getenv("HOME") or ".") .. "/.local/state" end
  return state .. "/runbook/repl_history"
end

local function history_file()
  local path = repl.history_path()
  local ok = pcall(sys.mkdirs, path:match("^(.*)/[^/]*$"), 448)   -- 0700
  return ok and path or nil
end

local function setup(args)
  if args[1] ~= nil then engine.usage_error("repl: takes no arguments (got %q)", args[1]) end
  local cfg, cerr = config.load(args.config)
  if not cfg then engine.usage_error("%s", cerr) end
  local fields = { dry_run = args["dry-run"] or false, yes = args.yes or false,
    interactive = operator.isatty(0), config = cfg }
  if args.target then
    local t, terr = config.target(cfg, args.target)
    if not t then engine.usage_error("%s", terr) end
    fields.target = t
  end
  local run = engine.new_run(fields)
  run.phase = "execute"
  if not run.dry_run then run.before_write = repl.before_write end
  local env, G = api.environment(run)
  local room = require("runbook.room")
  local spec, rerr = room.spec(cfg, fields.target)
  if rerr then engine.usage_error("%s", rerr) end
  local rec, err = record.open("repl", args.transcript)
  if not rec then engine.usage_error("%s", err) end
  run.rec = rec
  if spec then room.attach(rec, spec) end
  rec:event("run.start", { runbook = "repl", operator = operator.username(),
    host = operator.hostname(), argv = args._argv, dry_run = run.dry_run,
    target = run.target and run.target.name, pid = sys.getpid(),
    version = require("runbook.host").version })
  rec:sync()
  local prompt, more = repl.prompts(run)
  G.help = function(x) return repl.help(env, G, x) end
  return setmetatable({ run = run, rec = rec, env = env, G = G, evals = 0, errors = 0,
    t0 = loop.now(), history = history_file(), prompt = prompt, prompt_more = more }, repl)
end

-- help(): every documented call; help(http.get), help(db.query),
-- help("db:query"), help("sql"): its usage and its section of
-- docs/authoring.md, from the same text (runbook.help).
-- The text is the host's own, as the page has it: written without the
-- redaction ui.print applies, which would turn the page's
-- "redis://[[user]:password@]host" into "***".
function repl.help(env, G, x)
  local help = require("runbook.help")
  if x == nil then
    operator.write(help.index(), "\n")
    return
  end
  local name = type(x) == "string" and x or require("runbook.complete").name_of(env, G, x)
  local text = name and help.text(name)
  if not text then
    ui.print(string.format("no help for %s; help() lists every documented call",
      type(x) == "string" and string.format("%q", x) or tostring(name or x)))
    return
  end
  operator.write(text, "\n")
end

-- The completions of the word before the cursor (src/lineedit.c's Tab):
-- raw reads only, nothing called (runbook.complete).
function repl:complete(word)
  return require("runbook.complete").candidates(self.env, self.G, word)
end

-- The prompt says what a line acts on: "runbook> " on this machine,
-- "runbook[prod-db live]> " against a target for real, "[dry-run]" in a
-- rehearsal.  The continuation prompt ends under it.
function repl.prompts(run)
  local tags = {}
  if run.target then tags[#tags + 1] = run.target.name end
  if run.dry_run then tags[#tags + 1] = "dry-run" elseif run.target then tags[#tags + 1] = "live" end
  local prompt = #tags > 0 and ("runbook[" .. table.concat(tags, " ") .. "]> ") or "runbook> "
  return prompt, string.rep(" ", #prompt - 4) .. "...> "
end

-- A write (a mutating call, as the dry run would simulate it) in a live
-- session: against a target it is asked as a dangerous step's is (a
-- confirm event; "no" declines it, --yes answers for a pipe), on this
-- machine it is shown.
function repl.before_write(run, spec)
  local what = api.describe(spec)
  if run.target then
    api.verbs.confirm(string.format("Live write on %s: %s. Run it?", run.target.name, what))
  else
    ui.print("  " .. ui.style("yellow", "write:") .. " " .. what)
  end
end

-- Set up the run behind the prompt and print the banner.  Returns the REPL
-- object, or nil and exit code 2 after saying what is wrong.
function repl.start(args)
  local ok, r = pcall(setup, args)
  if not ok then
    ui.eprint(ui.style("red", "runbook repl: ") .. tostring(r))
    return nil, 2
  end
  ui.print(ui.style("bold", "runbook " .. require("runbook.host").version .. " repl") ..
    (r.run.dry_run and ui.style("magenta", " (dry run: mutating actions are shown, not run)") or "") ..
    (r.run.target and (" target " .. r.run.target.name) or "") ..
    ui.style("dim", " - transcript: " .. r.rec.path .. " - Ctrl-D quits"))
  return r
end

-- An expression first, so `1+1` prints 2; then the chunk as statements.
local function compile(self, chunk)
  local fn = load("return " .. chunk, CHUNKNAME, "t", self.env)
  if fn then return fn end
  return load(chunk, CHUNKNAME, "t", self.env)
end

-- The results as text, separated by tabs as lua.c does; nil when there are none.
local function format_results(res)
  if res.n < 2 then return nil end
  local parts = {}
  for i = 2, res.n do parts[#parts + 1] = pretty.format(res[i]) end
  return table.concat(parts, "\t")
end

-- s cut to at most n bytes, on a UTF-8 character boundary.
local function cut(s, n)
  if #s <= n then return s end
  while n > 0 and s:byte(n + 1) >= 0x80 and s:byte(n + 1) < 0xC0 do n = n - 1 end
  return s:sub(1, n) .. string.format("... [%d bytes cut]", #s - n)
end

-- An error as text: a plain table raised with error{} is shown as a value.
local function error_text(err)
  local mt = getmetatable(err)
  if type(err) == "table" and not (type(mt) == "table" and mt.__tostring) then
    local ok, text = pcall(pretty.format, err)
    if ok then return text end
  end
  return tostring(err)
end

-- Run a compiled chunk as a task on the loop.  Returns ok, printed text or
-- error message.
local function run_chunk(fn)
  local res = table.pack(loop.run(fn))
  if not res[1] then return false, error_text(res[2]) end
  local okf, text = pcall(format_results, res)
  if not okf then return false, "cannot print the result: " .. tostring(text) end
  return true, text
end

-- Evaluate one chunk.  Returns "incomplete" when more lines are needed
-- (unless `final`: the input ended, so report the syntax error), else "ok"
-- or "error" and the chunk as it may be kept in the line history, with
-- secrets (those it just registered included) redacted.
function repl:eval(chunk, final)
  if chunk:match("^%s*$") then return "ok", "" end
  local fn, err = compile(self, chunk)
  if not fn and not final and err:sub(-#EOF_MARK) == EOF_MARK then return "incomplete" end
  local t0 = loop.now()
  local ok, text
  if fn then ok, text = run_chunk(fn) else ok, text = false, err end
  local interrupted = loop.interrupts() > 0
  loop.ack_interrupt()
  self.evals = self.evals + 1
  if ok then
    if text then ui.print(text) end
  else
    self.errors = self.errors + 1
    -- the terminal echoed ^C where the cursor was
    if interrupted and self.run.interactive then operator.write("\n") end
    ui.eprint(ui.style("red", "error: " .. text))
  end
  self.rec:event("eval", { code = chunk, ok = ok,
    result = ok and text and cut(transcript.redact(text), RESULT_MAX) or nil,
    error = not ok and text or nil, interrupted = interrupted or nil,
    duration = loop.now() - t0 })
  self.rec:sync()
  return ok and "ok" or "error", transcript.redact(chunk)
end

-- Write run.end, close the transcript and say where it is.
function repl:finish(status)
  local rec = self.rec
  engine.finish(self.run)   -- run.cleanup: close connections, release locks
  local sig, signame = loop.terminated()
  rec:event("run.end", { status = status or "done", evals = self.evals, errors = self.errors,
    exit = status == "terminated" and 128 + sig or nil, signal = signame,
    duration = loop.now() - self.t0 })
  rec:sync()
  local final = rec:hash()
  rec:close()
  ui.print(ui.style("dim", "transcript: " .. rec.path .. "\nfinal hash: " .. final))
end

return repl
