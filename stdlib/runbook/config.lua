-- runbook.config: the config file and its targets.
--
-- $XDG_CONFIG_HOME/runbook/config.lua (else ~/.config/runbook/config.lua),
-- or --config FILE, is Lua that sets `targets` (name -> table) and
-- `notify` (channels).  Secrets are referenced by environment variable
-- with env("NAME"), which also marks the value for redaction.

local config = {}

function config.default_path()
  local base = os.getenv("XDG_CONFIG_HOME")
  if base == nil or base == "" then base = (os.getenv("HOME") or ".") .. "/.config" end
  return base .. "/runbook/config.lua"
end

-- Load the config; a missing default file is an empty config, a missing
-- --config file is an error.  Returns the table, or nil and a message.
function config.load(path)
  local explicit = path ~= nil
  path = path or config.default_path()
  local f = io.open(path, "r")
  if not f then
    if explicit then return nil, string.format("--config: cannot read %s", path) end
    return { targets = {}, notify = {}, path = nil }
  end
  f:close()
  local env = {
    env = function(name, default)
      local v = os.getenv(name)
      if v == nil or v == "" then
        if default ~= nil then return default end
        error(string.format("config: environment variable %s is not set", name), 2)
      end
      require("runbook.record").secret(v)
      return v
    end,
    os = { getenv = os.getenv }, string = string, table = table, tostring = tostring,
    tonumber = tonumber, ipairs = ipairs, pairs = pairs,
  }
  local chunk, err = loadfile(path, "t", env)
  if not chunk then return nil, "config: " .. err end
  local ok, res = pcall(chunk)
  if not ok then return nil, "config: " .. tostring(res) end
  local cfg = type(res) == "table" and res or env
  return { targets = cfg.targets or {}, notify = cfg.notify or {}, lock = cfg.lock, path = path }
end

-- The table of target `name`, or nil and a message listing the known ones.
function config.target(cfg, name)
  local t = cfg.targets[name]
  if t == nil then
    local names = {}
    for k in pairs(cfg.targets) do names[#names + 1] = k end
    table.sort(names)
    return nil, string.format("--target: no target %q in %s (targets: %s)", name,
      cfg.path or config.default_path(), #names > 0 and table.concat(names, ", ") or "none")
  end
  if type(t) ~= "table" then return nil, string.format("--target: target %q is not a table", name) end
  t.name = t.name or name
  return t
end

return config
