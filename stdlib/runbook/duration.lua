-- runbook.duration: the config's durations ("90s", "15m", "4h", "1d", or a
-- number of seconds) and its tables by severity (cadence, respond).
-- Pure Lua: tests/unit/cadence.lua runs it with the plain interpreter.
local duration = {}

local UNITS = { s = 1, m = 60, h = 3600, d = 86400 }

-- Seconds, or nil and why.  A positive amount only: a cadence or a
-- response time of zero would remind or escalate all the time.
function duration.parse(v)
  local n
  if type(v) == "number" then
    n = v
  elseif type(v) == "string" then
    local num, unit = v:match("^%s*(%d+%.?%d*)%s*([smhd]?)%s*$")
    if num then n = tonumber(num) * UNITS[unit ~= "" and unit or "s"] end
  end
  if n == nil then
    return nil, string.format("%s is not a duration (\"90s\", \"15m\", \"4h\", \"1d\" or seconds)",
      type(v) == "string" and string.format("%q", v) or tostring(v))
  end
  if n ~= n or n <= 0 or n == math.huge then
    return nil, string.format("%s: a duration must be more than 0 seconds", tostring(v))
  end
  return n
end

-- "15m", "4h", "90s", "1h30m": the shortest way to write seconds back.
function duration.text(seconds)
  local s = math.floor(seconds + 0.5)
  if s < 60 or (s < 600 and s % 60 ~= 0) then return s .. "s" end
  local parts = {}
  for _, u in ipairs({ { "d", 86400 }, { "h", 3600 }, { "m", 60 }, { "s", 1 } }) do
    if s >= u[2] then
      parts[#parts + 1] = (s // u[2]) .. u[1]
      s = s % u[2]
    end
  end
  return table.concat(parts)
end

local LEVELS = { P0 = true, P1 = true, P2 = true, P3 = true }

-- A config table by severity (`cadence = { P0 = "15m", ... }`) merged over
-- its defaults: level -> seconds.  nil and "where.P1: why" for a level that
-- is not P0-P3 or a value that is not a duration.
-- The seconds a checked per-level table (the config's, by_level's) gives
-- level, else defaults' (a table of duration texts); nil without a level.
function duration.at_level(t, defaults, level)
  if level == nil then return nil end
  if t == nil then t = duration.by_level(nil, defaults) end
  return t[level]
end

function duration.by_level(t, defaults, where)
  local out = {}
  for level, v in pairs(defaults) do out[level] = duration.parse(v) end
  if t == nil then return out end
  if type(t) ~= "table" then return nil, where .. ": expected a table { P0 = \"15m\", ... }" end
  for level, v in pairs(t) do
    if not LEVELS[level] then
      return nil, string.format("%s.%s: not a severity (P0, P1, P2 or P3)", where, tostring(level))
    end
    local s, why = duration.parse(v)
    if not s then return nil, string.format("%s.%s: %s", where, level, why) end
    out[level] = s
  end
  return out
end

return duration
