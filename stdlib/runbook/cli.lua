-- runbook.cli: the command line, as git.c is git's.
--
-- Each command is one file, stdlib/runbook/cmd/<name>.lua, returning
--   { summary = "one line for 'runbook --help'",
--     synopsis = "what follows 'usage: runbook <name>'",
--     description = "the paragraph of '<name> --help'",
--     options = { { name = "target", short = "t", value = "NAME", help = "..." },
--                 { name = "param", short = "p", value = "K=V", list = true, help = "..." },
--                 { name = "dry-run", short = "n", help = "..." }, ... },   -- no value: a flag
--     ends_on_term = true,   -- only for a command that runs steps: SIGTERM/SIGHUP end its
--                            -- run cleanly instead of killing the process
--     run = function(args) ... return exit_code end }
-- main() parses the options with src/args.c (so `runbook <name> --help` and
-- the errors naming a flag come from the same table; -h/--help is added to
-- every command), then calls run with the parsed table: option name ->
-- true | value | {values}, [1..n] the positional arguments, _argv the raw
-- command line for the transcript.
--
-- Adding a command: write stdlib/runbook/cmd/<name>.lua and add its name to
-- cli.COMMANDS (the order of 'runbook --help').
local args = require("runbook.args")
local loop = require("runbook.loop")
local sys = require("runbook.sys")
local ui = require("runbook.ui")

local cli = {}

cli.COMMANDS = { "run", "list", "show", "check", "new", "import", "repl", "verify", "report",
  "runs", "watch", "approve", "update", "stats" }

-- Commands for the shell and the build, not listed by 'runbook --help';
-- each module's main(argv) gets the words unparsed (completion is asked
-- about half-typed command lines): __complete answers the completion
-- scripts (dist/completion/), __manpage writes runbook(1) at build time.
cli.HIDDEN = { __complete = "runbook.shellcomplete", __manpage = "runbook.manpage" }

local HELP_OPTION = { name = "help", short = "h", help = "show this help" }

-- Print "runbook: <message>" in red on stderr and return code.
function cli.fail(code, fmt, ...)
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

function cli.is_file(path)
  local st = sys.stat(path)
  return st ~= nil and st.type == "file"
end

-- A path for NAME|FILE, or nil and a message saying where it looked.
function cli.resolve(name)
  if name:find("/") or name:match("%.lua$") or name:match("%.md$") then
    if cli.is_file(name) then return name end
    return nil, string.format("no runbook file %s", name)
  end
  for _, dir in ipairs(cli.search_dirs()) do
    for _, ext in ipairs({ ".lua", ".md" }) do       -- a markdown checklist is a runbook too
      local path = dir .. "/" .. name .. ext
      if cli.is_file(path) then return path end
    end
  end
  return nil, string.format("no runbook named %q in %s", name, table.concat(cli.search_dirs(), ", "))
end

-- A fresh run and the declared plan of NAME|FILE, or nil and the message.
function cli.load_plan(name, fields)
  local engine = require("runbook.engine")
  local path, err = cli.resolve(name)
  if not path then return nil, err end
  local run = engine.new_run(fields)
  local plan, lerr = engine.declare(run, path)
  if not plan then return nil, "load error: " .. lerr end
  return run, plan
end

-- A bug in the host, not a mistake of the operator: its traceback, as
-- src/host.c's rb_host_pcall prints one.
local function traceback(e)
  if type(e) ~= "string" then
    local mt = getmetatable(e)
    if mt and mt.__tostring then return tostring(e) end
    e = string.format("(error object is a %s value)", type(e))
  end
  return debug.traceback(e, 2)
end

-- fn(...) in a protected call: true and its results, or false once the
-- internal error was printed.
function cli.protect(fn, ...)
  local res = table.pack(xpcall(fn, traceback, ...))
  if not res[1] then
    io.stderr:write("runbook: internal error: ", tostring(res[2]), "\n")
    io.stderr:flush()
    return false
  end
  return table.unpack(res, 1, res.n)
end

local function usage(f)
  f:write("usage: runbook <command> [options]\n\n",
    "Run incident runbooks step by step, with confirmations, a dry run\n",
    "and a verifiable transcript.\n\ncommands:\n")
  for _, name in ipairs(cli.COMMANDS) do
    f:write(string.format("  %-8s  %s\n", name, require("runbook.cmd." .. name).summary))
  end
  f:write("\n'runbook <command> --help' describes a command.\n",
    "Exit codes: 0 done, 1 a step failed or aborted, 2 usage or load error,\n",
    "130 interrupted, 128+N ended by signal N (143 SIGTERM, 129 SIGHUP).\n")
end

local function find(name)
  for _, c in ipairs(cli.COMMANDS) do
    if c == name then return require("runbook.cmd." .. name) end
  end
  return nil
end

local function with_help(options)
  local all = {}
  for i, o in ipairs(options or {}) do all[i] = o end
  all[#all + 1] = HELP_OPTION
  return all
end

-- The command's options parsed, --help answered, its flags' setup done,
-- then the command.  Returns the exit code.
local function dispatch(name, cmd, argv)
  if cmd.ends_on_term then loop.catch_term() end
  local options = with_help(cmd.options)
  local parsed, err = args.parse(options, { table.unpack(argv, 2) })
  if not parsed then
    io.stderr:write(string.format("runbook %s: %s\nTry 'runbook %s --help'.\n", name, err, name))
    return 2
  end
  if parsed.help then
    args.usage(name, cmd.synopsis, cmd.description, options)
    return 0
  end
  parsed._argv = argv
  collectgarbage("restart")     -- stopped while the modules loaded (src/alloc.c)
  local ok, rc = cli.protect(cmd.run, parsed)
  if not ok then return 1 end
  return math.tointeger(rc) or 0
end

-- argv[1] is the command's name.  Returns the exit code.
function cli.main(argv)
  local name = argv[1]
  if name == nil then
    usage(io.stderr)
    return 2
  end
  if name == "--help" or name == "-h" or name == "help" then
    usage(io.stdout)
    return 0
  end
  if cli.HIDDEN[name] then
    collectgarbage("restart")
    local ok, rc = cli.protect(function() return require(cli.HIDDEN[name]).main(argv) end)
    return ok and (math.tointeger(rc) or 0) or 1
  end
  local ok, cmd = cli.protect(find, name)
  if not ok then return 2 end
  if cmd == nil then
    io.stderr:write(string.format("runbook: '%s' is not a command. See 'runbook --help'.\n", name))
    return 2
  end
  return dispatch(name, cmd, argv)
end

return cli
