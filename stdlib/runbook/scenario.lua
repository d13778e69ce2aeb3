-- runbook.scenario: game-day scenarios (--scenario FILE).
--
-- A scenario file is Lua returning a list of rules; each replaces the
-- result of the calls it matches, so a rehearsal (usually with --dry-run)
-- can walk a runbook's failure branches:
--
--   return {
--     { name = "health down", primitive = "http", match = "/health",
--       result = { status = 503, body = "down" } },
--     { primitive = "exec", match = "pg_restore", step = "restore",
--       result = { code = 1, stderr = "pg_restore: error: corrupt dump" } },
--     { primitive = "ssh", match = "web2", error = "connect timed out after 10.0 s",
--       times = 1 },
--   }
--
-- `match` is a Lua pattern searched in the call as it is shown ("pg_restore
-- --clean ...", "GET https://..."); `step` limits a rule to a step id;
-- `times` limits how often it fires (default: always).  The first rule that
-- matches wins.
local scenario = {}
scenario.__index = scenario

local function fail(path, i, msg)
  error(string.format("--scenario %s: rule %d: %s", path, i, msg), 0)
end

local function deep_copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = deep_copy(x) end
  return out
end

function scenario.load(path)
  local chunk, err = loadfile(path, "t", {})
  if not chunk then error("--scenario: " .. err, 0) end
  local ok, rules = pcall(chunk)
  if not ok then error("--scenario: " .. tostring(rules), 0) end
  if type(rules) ~= "table" then error("--scenario " .. path .. ": must return a list of rules", 0) end
  for i, r in ipairs(rules) do
    if type(r) ~= "table" then fail(path, i, "not a table") end
    if type(r.primitive) ~= "string" then fail(path, i, "needs primitive = \"exec\"|\"http\"|...") end
    if r.match ~= nil and type(r.match) ~= "string" then fail(path, i, "match must be a Lua pattern string") end
    if (r.result == nil) == (r.error == nil) then fail(path, i, "needs exactly one of result= or error=") end
    if r.result ~= nil and type(r.result) ~= "table" then fail(path, i, "result must be a table") end
    if r.error ~= nil and type(r.error) ~= "string" then fail(path, i, "error must be a string") end
    r.name = r.name or string.format("rule %d", i)
    r.fired = 0
  end
  return setmetatable({ path = path, rules = rules }, scenario)
end

-- The rule replacing this call, or nil.
function scenario:match(primitive, describe, step)
  for _, r in ipairs(self.rules) do
    if r.primitive == primitive
      and (r.match == nil or (describe or ""):find(r.match) ~= nil)
      and (r.step == nil or (step ~= nil and step.id == r.step))
      and (r.times == nil or r.fired < r.times) then
      r.fired = r.fired + 1
      local summary = r.error and ("error: " .. r.error) or "replaced result"
      return { name = r.name, error = r.error, result = r.result, summary = summary .. " (" .. r.name .. ")",
        copy = function() return deep_copy(r.result) end }
    end
  end
  return nil
end

return scenario
