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
-- matches wins.  A rule that never fired is named at the end of the run
-- (on screen and as a `scenario.unused` event): a `match` that no longer
-- meets the call's text (the runbook or a stdlib module changed it) would
-- otherwise turn the rehearsal into a run of the happy path, without a word.
local ui = require("runbook.ui")

local scenario = {}
scenario.__index = scenario

-- The line of each rule's `match` in the file, found by its text: a
-- rule table carries no line of its own.  Rules built by code (a loop, a
-- pattern with escapes written differently) get no line.
local function rule_lines(path, rules)
  local f = io.open(path, "r")
  if not f then return {} end
  local src = {}
  for l in f:lines() do src[#src + 1] = l end
  f:close()
  local lines, from = {}, 1
  for i, r in ipairs(rules) do
    if type(r) == "table" and type(r.match) == "string" then
      for n = from, #src do
        if src[n]:find("match", 1, true) and src[n]:find(r.match, 1, true) then
          lines[i], from = n, n + 1
          break
        end
      end
    end
  end
  return lines
end

local function fail(path, lines, i, msg)
  local where = lines[i] and string.format("%s:%d", path, lines[i]) or path
  error(string.format("--scenario %s: rule %d: %s", where, i, msg), 0)
end

-- Why p is not a valid Lua pattern, in Lua's own words, or nil.  Matching
-- against one subject is not enough: the matcher stops at the first item
-- that fails and never reads the malformed part after it ("abc[" on "x").
-- So walk the pattern the way lstrlib.c does.
local function set_end(p, i)      -- i just after '['; returns the index after ']'
  if p:sub(i, i) == "^" then i = i + 1 end
  repeat
    if i > #p then return nil, "malformed pattern (missing ']')" end
    local c = p:sub(i, i)
    i = i + 1
    if c == "%" then
      if i > #p then return nil, "malformed pattern (missing ']')" end
      i = i + 1
    end
  until p:sub(i, i) == "]"
  return i + 1
end

local function escape_end(p, i, open, closed)   -- i at '%'
  local c = p:sub(i + 1, i + 1)
  if c == "" then return nil, "malformed pattern (ends with '%')" end
  if c == "b" then
    if i + 3 > #p then return nil, "malformed pattern (missing arguments to '%b')" end
    return i + 4
  elseif c == "f" then
    if p:sub(i + 2, i + 2) ~= "[" then return nil, "missing '[' after '%f' in pattern" end
    return set_end(p, i + 3)
  elseif c:match("%d") then
    local k = tonumber(c)
    if k == 0 or k > #open or not closed[k] then return nil, "invalid capture index %" .. c .. " in pattern" end
  end
  return i + 2
end

function scenario.pattern_error(p)
  -- string.find takes a pattern without any of these as plain text.
  if not p:find("[%^%$%*%+%?%.%(%[%%%-]") then return nil end
  local i, open, closed = 1, {}, {}
  while i <= #p do
    local c, why = p:sub(i, i), nil
    if c == "(" then
      open[#open + 1] = true
      if #open > 32 then return "too many captures" end
      i = i + 1
    elseif c == ")" then
      local k = #open
      while k > 0 and closed[k] do k = k - 1 end
      if k == 0 then return "invalid pattern capture" end
      closed[k] = true
      i = i + 1
    elseif c == "%" then i, why = escape_end(p, i, open, closed)
    elseif c == "[" then i, why = set_end(p, i + 1)
    else i = i + 1 end
    if not i then return why end
  end
  for k = 1, #open do if not closed[k] then return "unfinished capture" end end
  local ok, err = pcall(string.find, "", p)
  if not ok then return tostring(err) end
end

local function check_rule(path, lines, i, r)
  if type(r) ~= "table" then fail(path, lines, i, "not a table") end
  if type(r.primitive) ~= "string" then fail(path, lines, i, "needs primitive = \"exec\"|\"http\"|...") end
  if r.match ~= nil and type(r.match) ~= "string" then fail(path, lines, i, "match must be a Lua pattern string") end
  if r.match ~= nil then
    local why = scenario.pattern_error(r.match)
    if why then fail(path, lines, i, string.format("match %q is not a valid Lua pattern: %s", r.match, why)) end
  end
  if r.step ~= nil and type(r.step) ~= "string" then fail(path, lines, i, "step must be a step id (a string)") end
  if r.times ~= nil and math.type(r.times) ~= "integer" then fail(path, lines, i, "times must be a whole number") end
  if (r.result == nil) == (r.error == nil) then fail(path, lines, i, "needs exactly one of result= or error=") end
  if r.result ~= nil and type(r.result) ~= "table" then fail(path, lines, i, "result must be a table") end
  if r.error ~= nil and type(r.error) ~= "string" then fail(path, lines, i, "error must be a string") end
end

local function deep_copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = deep_copy(x) end
  return out
end

-- Every rule is checked here, when the scenario loads, so a mistake stops
-- the run before anything runs rather than failing inside a step.
function scenario.load(path)
  local chunk, err = loadfile(path, "t", {})
  if not chunk then error("--scenario: " .. err, 0) end
  local ok, rules = pcall(chunk)
  if not ok then error("--scenario: " .. tostring(rules), 0) end
  if type(rules) ~= "table" then error("--scenario " .. path .. ": must return a list of rules", 0) end
  local lines = rule_lines(path, rules)
  for i, r in ipairs(rules) do
    check_rule(path, lines, i, r)
    r.name = r.name or string.format("rule %d", i)
    r.fired, r.line = 0, lines[i]
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

-- The rules that replaced no call: { index, name, primitive, match, step,
-- line }, in the file's order.
function scenario:unused()
  local list = {}
  for i, r in ipairs(self.rules) do
    if r.fired == 0 then
      list[#list + 1] = { index = i, name = r.name, primitive = r.primitive, match = r.match,
        step = r.step, line = r.line }
    end
  end
  return list
end

-- At the end of the run: each rule that never fired, shown and recorded.
function scenario:report_unused(run)
  local unused = self:unused()
  if #unused == 0 then return end
  ui.print(ui.style("magenta", "scenario:") .. " " .. ui.style("yellow", string.format(
    "%d of %d rule(s) of %s never fired: this rehearsal did not exercise them", #unused, #self.rules,
    self.path)))
  for _, u in ipairs(unused) do
    ui.print(string.format("  rule %d %q%s: no %s call%s matched %s", u.index, u.name,
      u.line and string.format(" (%s:%d)", self.path, u.line) or "", u.primitive,
      u.step and (" in step " .. u.step) or "", u.match and string.format("%q", u.match) or "(any)"))
  end
  if run.rec then run.rec:event("scenario.unused", { scenario = self.path, rules = unused }) end
end

return scenario
