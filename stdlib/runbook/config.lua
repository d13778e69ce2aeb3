-- runbook.config: the config file and its targets.
--
-- $XDG_CONFIG_HOME/runbook/config.lua (else ~/.config/runbook/config.lua),
-- or --config FILE, is Lua that sets `targets` (name -> table) and
-- `notify` (channels).  Secrets are referenced by environment variable
-- with env("NAME"), which also marks the value for redaction; an unset one
-- fails only the target, channel or lock that uses it.

local config = {}

function config.default_path()
  local base = os.getenv("XDG_CONFIG_HOME")
  if base == nil or base == "" then base = (os.getenv("HOME") or ".") .. "/.config" end
  return base .. "/runbook/config.lua"
end

-- env("X") of an unset variable: a placeholder instead of an error, so a
-- config that names a production secret does not block every run on a
-- machine without it.  It remembers where it was asked for; using the
-- target (or the notify channel, the lock) that holds it fails, naming the
-- variable.  Concatenation keeps it a placeholder ("postgres://u:" ..
-- env("PW") .. "@db"); any other use is the error itself.
config.Missing = {}

local function missing_text(m)
  return string.format("environment variable %s is not set (config %s:%d)", m.var, m.file, m.line)
end

config.Missing.__concat = function(a, b)
  return getmetatable(a) == config.Missing and a or b
end
config.Missing.__tostring = function(m) error(missing_text(m), 0) end
config.Missing.__index = function(m) error(missing_text(m), 0) end

local function make_env()
  return {
    env = function(name, default)
      local v = os.getenv(name)
      if v == nil or v == "" then
        if default ~= nil then return default end
        local info = debug.getinfo(2, "Sl")
        return setmetatable({ var = name, file = info.short_src, line = info.currentline }, config.Missing)
      end
      require("runbook.record").secret(v)
      return v
    end,
    os = { getenv = os.getenv }, string = string, table = table, tostring = tostring,
    tonumber = tonumber, ipairs = ipairs, pairs = pairs,
  }
end

-- The first placeholder in t (depth first, keys in order), and its path.
local function find_missing(t, where, seen)
  seen = seen or {}
  if seen[t] then return nil end
  seen[t] = true
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(keys) do
    local v, at = rawget(t, k), where .. "." .. tostring(k)
    if getmetatable(v) == config.Missing then return v, at end
    if type(v) == "table" then
      local m, mat = find_missing(v, at, seen)
      if m then return m, mat end
    end
  end
end

-- A section used by name at run time (notify, lock): a key holding a
-- placeholder is taken out and raises, naming the variable, when read.
local function guard(t, where)
  if type(t) ~= "table" then return t end
  local missing = {}
  for k, v in pairs(t) do
    if getmetatable(v) == config.Missing then
      missing[k] = v
    elseif type(v) == "table" and getmetatable(v) == nil then
      guard(v, where .. "." .. tostring(k))
    end
  end
  if next(missing) == nil then return t end
  for k in pairs(missing) do t[k] = nil end
  return setmetatable(t, { __index = function(_, k)
    if missing[k] then error(string.format("%s.%s: %s", where, tostring(k), missing_text(missing[k])), 0) end
  end })
end

-- The incident settings of a config (runbook.cadence, runbook.escalation,
-- runbook.templates): cadence and respond as level -> seconds over their
-- defaults, the escalation channel, the message templates, announce.
-- Returns the fields, or nil and "config FILE: what is wrong".
local function incident_settings(cfg, path)
  local duration = require("runbook.duration")
  local out = { escalation = cfg.escalation, templates = cfg.templates, announce = cfg.announce }
  local err
  out.cadence, err = duration.by_level(cfg.cadence, require("runbook.cadence").DEFAULTS, "cadence")
  if out.cadence and cfg.respond ~= nil then    -- unset: escalation.respond takes its defaults
    out.respond, err = duration.by_level(cfg.respond, require("runbook.escalation").DEFAULTS, "respond")
  end
  if err == nil and cfg.escalation ~= nil and type(cfg.escalation) ~= "string" then
    err = "escalation: expected the name of a notify channel"
  end
  if err == nil and cfg.templates ~= nil then err = require("runbook.templates").check(cfg.templates, "templates") end
  if err then return nil, string.format("config %s: %s", path or "(none)", err) end
  return out
end

-- loaded with the incident settings of cfg, or nil and why.
local function with_settings(loaded, cfg)
  local settings, err = incident_settings(cfg, loaded.path)
  if not settings then return nil, err end
  for k, v in pairs(settings) do loaded[k] = v end
  return loaded
end

-- Load the config; a missing default file is an empty config, a missing
-- --config file is an error.  Returns the table, or nil and a message.
function config.load(path)
  local explicit = path ~= nil
  path = path or config.default_path()
  local f = io.open(path, "r")
  if not f then
    if explicit then return nil, string.format("--config: cannot read %s", path) end
    return with_settings({ targets = {}, notify = {}, path = nil }, {})
  end
  f:close()
  local env = make_env()
  local chunk, err = loadfile(path, "t", env)
  if not chunk then return nil, "config: " .. err end
  local ok, res = pcall(chunk)
  if not ok then return nil, "config: " .. tostring(res) end
  local cfg = type(res) == "table" and res or env
  return with_settings({ targets = cfg.targets or {}, notify = guard(cfg.notify or {}, "notify"),
    lock = guard(cfg.lock, "lock"), room = guard(cfg.room, "room"), path = path }, cfg)
end

-- The room table a run uses, unchecked (runbook.room.spec checks it): the
-- target's, else the config's, else nil.  Here so that a run without a
-- room does not load runbook.room.
function config.room_of(cfg, target)
  return (type(target) == "table" and target.room) or (cfg and cfg.room) or nil
end

-- The table of target `name`, or nil and a message listing the known ones.
function config.target(cfg, name)
  local t = cfg.targets[name]
  if t == nil and cfg.path == nil then
    return nil, string.format("--target %s: there is no config file (looked for %s): write one with a " ..
      "`targets` table, or pass --config FILE (docs/targets.md)", name, config.default_path())
  end
  if t == nil then
    local names = {}
    for k in pairs(cfg.targets) do names[#names + 1] = k end
    table.sort(names)
    return nil, string.format("--target: no target %q in %s (targets: %s)", name,
      cfg.path or config.default_path(), #names > 0 and table.concat(names, ", ") or "none")
  end
  if type(t) ~= "table" then return nil, string.format("--target: target %q is not a table", name) end
  local m, at = find_missing(t, name)
  if m then return nil, string.format("target %s: %s, needed by %s", name, missing_text(m), at) end
  t.name = t.name or name
  return t
end

return config
