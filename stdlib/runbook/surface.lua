-- runbook.surface: what a runbook may reach, and the words for what it may
-- not.
--
-- A runbook sees the verbs docs/authoring.md documents and an allow list
-- of Lua's pure functions, nothing else: `io.open` or `os.execute` would
-- act on the world behind the dry run and the transcript, so a rehearsal
-- could change it.  The same table of words serves the run-time refusal
-- (the restricted `os` and `io`, the runbook's `require`) and the static
-- one (runbook.lint, for `runbook check`), so both say the same thing.
--
-- The host's own runbook.* modules stay reachable from stdlib modules and
-- primitives, which are host code: they get the ordinary require through
-- the environment surface.module_env builds (as Nmap's nse_main.cc hands
-- its internals to nse_main.lua and never to a script).
local loop = require("runbook.loop")

local surface = {}

-- The pure functions of os a runbook keeps: time, no effect on the world.
surface.OS_ALLOWED = { time = true, date = true, clock = true, difftime = true, getenv = true }

-- Lua libraries a runbook has whole (and may require by name).
surface.LIBS = { string = true, table = true, math = true, utf8 = true, coroutine = true }

-- What to use instead of what is not offered.  A name not here is refused
-- with a pointer to docs/authoring.md.
local INSTEAD = {
  ["os.execute"] = "exec{...} or sh(cmd)",
  ["os.remove"] = "file.remove(path)",
  ["os.rename"] = 'exec{"mv", from, to}',
  ["os.tmpname"] = 'exec{"mktemp", readonly = true}',
  ["os.exit"] = "error(message) to fail the step",
  ["io.open"] = "file.read/file.write",
  ["io.lines"] = "file.read(path):gmatch(\"[^\\n]+\")",
  ["io.popen"] = "exec{...}",
  ["io.read"] = "prompt(question)",
  ["io.write"] = "print(...) or log.info(...)",
  ["io.stdout"] = "print(...) or log.info(...)",
  ["io.stderr"] = "log.warn(...) or log.error(...)",
  ["io.output"] = "file.write(path, text)",
  ["io.input"] = "file.read(path)",
  ["load"] = 'require("lib.x") for a module beside the runbook',
  ["loadfile"] = 'require("lib.x") for a module beside the runbook',
  ["dofile"] = 'require("lib.x") for a module beside the runbook',
  ["package"] = 'require("name")',
  ["collectgarbage"] = nil,
  ["require runbook.loop"] = "time.clock() for timings, wait(seconds) to pause",
  ["require runbook.sys"] = "file.stat/file.list/file.read",
  ["require cjson"] = "json.encode/json.decode",
  ["require os"] = "the os global (os.time, os.date, os.clock, os.getenv)",
  ["require io"] = "file.read/file.write",
}

-- Globals Lua has that a runbook does not (read as a global, refused).
surface.DENIED_GLOBALS = { debug = true, load = true, loadfile = true, dofile = true,
  package = true, collectgarbage = true }

-- "os.execute is not available to runbooks; use exec{...} or sh(cmd)".
function surface.refusal(what)
  local instead = INSTEAD[what]
  if instead then return what .. " is not available to runbooks; use " .. instead end
  return what .. " is not available to runbooks (docs/authoring.md lists what is)"
end

-- The refusal for require(name) from a runbook, or nil when name may be
-- required: a host internal (runbook.*), Lua's own os, io, debug and
-- package, a C library the host loaded (cjson).
function surface.refused_module(name)
  local host = name:match("^runbook%.") or name == "runbook"
  if not host and not (name == "os" or name == "io" or name == "debug" or name == "package"
      or package.loaded[name] ~= nil or package.preload[name] ~= nil) then
    return nil
  end
  if surface.LIBS[name] then return nil end
  local instead = INSTEAD["require " .. name]
  local what = string.format("require(%q)", name)
  if host then what = what .. ": " .. name .. " is a host internal and" end
  if instead then return what .. " is not available to runbooks; use " .. instead end
  return what .. " is not available to runbooks (docs/authoring.md lists what is)"
end

-- A library table with only the allowed names; any other is refused at
-- the runbook's line (the frame indexing it).
local function restricted(libname, lib, allowed)
  local t = {}
  for k in pairs(allowed) do t[k] = lib[k] end
  return setmetatable(t, {
    __index = function(_, k) error(surface.refusal(libname .. "." .. tostring(k)), 2) end,
    __newindex = function(_, k) error(surface.refusal(libname .. "." .. tostring(k)), 2) end,
  })
end

-- The Lua part of a runbook's environment: the allow list, the restricted
-- os and the refusing io.
function surface.lua_globals(G)
  for _, k in ipairs({ "assert", "error", "ipairs", "next", "pairs", "pcall", "select",
      "tonumber", "tostring", "type", "xpcall", "setmetatable", "getmetatable", "rawequal",
      "rawget", "rawset", "rawlen", "_VERSION" }) do
    G[k] = _G[k]
  end
  for k in pairs(surface.LIBS) do G[k] = _G[k] end
  G.os = restricted("os", os, surface.OS_ALLOWED)
  G.io = restricted("io", io, {})
end

-- Wraps the metatable of G (which installs primitives on first use) so a
-- global Lua has and a runbook does not is refused by name, not nil.
function surface.refuse_globals(G)
  local mt = getmetatable(G) or {}
  local lazy = mt.__index
  mt.__index = function(t, k)
    local v
    if type(lazy) == "function" then v = lazy(t, k) elseif lazy then v = lazy[k] end
    if v == nil and surface.DENIED_GLOBALS[k] then error(surface.refusal(k), 2) end
    return v
  end
  setmetatable(G, mt)
end

-- time.now/clock/date: time read, nothing to simulate or record (every
-- transcript line carries its own ts).
function surface.time_verbs(G)
  G.time = {
    now = function() return os.time() end,          -- seconds since the epoch
    clock = function() return loop.now() end,       -- monotonic seconds: for durations
    date = function(fmt, t) return os.date(fmt or "!%Y-%m-%d %H:%M:%S UTC", t) end,
  }
end

-- The environment a stdlib module runs in: Lua's libraries (its own
-- require gives the rest, host internals included), the run's pcall and
-- xpcall, which let Ctrl-C through as a runbook's do, and nothing of the
-- runbook's verbs: a module names what it uses with require at its top.
function surface.module_env(G, private_require)
  local env = {}
  for _, k in ipairs({ "assert", "error", "ipairs", "next", "pairs", "select", "tonumber",
      "tostring", "type", "setmetatable", "getmetatable", "rawequal", "rawget", "rawset",
      "rawlen", "_VERSION" }) do
    env[k] = _G[k]
  end
  for k in pairs(surface.LIBS) do env[k] = _G[k] end
  env.os = G.os
  env.pcall, env.xpcall = G.pcall, G.xpcall
  env.require = private_require
  return env
end

-- A primitive as a stdlib module's require("http") returns it: installed
-- in the run the first time the module uses it, as in a runbook, so a
-- module that names http pays for libcurl only when it calls it.
function surface.primitive(G, name)
  if package.searchpath("runbook.prim." .. name, package.path) == nil then return nil end
  return setmetatable({}, {
    __index = function(_, k) return G[name][k] end,
    __call = function(_, ...) return G[name](...) end,
  })
end

return surface
