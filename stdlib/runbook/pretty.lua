-- runbook.pretty: values as Lua-like text, for the REPL's results.
--
-- Strings are quoted with escapes (never cut: the operator asked to see the
-- value), table keys are sorted (the array part first, in order), a table
-- that fits on one line is printed on it, a larger one is indented one
-- entry a line, and a table met again on its own path prints as <cycle>.
-- A table with a __tostring metamethod prints as its tostring: its author
-- chose how it looks.  Numbers print as Lua reads them back: an integer as
-- 1, a float as 1.0 or 0.30000000000000004 (the shortest of %.14g and
-- %.17g that gives the same double), infinities as math.huge; JSON's null
-- as json.null.  Tables nested deeper than MAX_DEPTH print as {...}, and
-- a result longer than MAX_LINES lines or MAX_BYTES bytes is cut with a
-- note saying how much was left out.
local null = require("cjson").null

local pretty = {}

local WIDTH = 76    -- a one-line table longer than this is split
local MAX_DEPTH = 8
local MAX_LINES = 200
local MAX_BYTES = 64 * 1024

local ESCAPES = { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
  ["\a"] = "\\a", ["\b"] = "\\b", ["\f"] = "\\f", ["\v"] = "\\v" }

local RESERVED = {}
for w in ([[and break do else elseif end false for function goto if in local nil not or
    repeat return then true until while]]):gmatch("%a+") do RESERVED[w] = true end

-- A string as a double-quoted Lua literal; control bytes as \ddd, other
-- bytes (UTF-8 text) as they are.
function pretty.quote(s)
  local body = s:gsub('[%c"\\]', function(c)
    return ESCAPES[c] or string.format("\\%03d", c:byte())
  end)
  return '"' .. body .. '"'
end

local function has_tostring(t)
  local mt = getmetatable(t)
  return type(mt) == "table" and rawget(mt, "__tostring") ~= nil
end

-- A number as a Lua literal that reads back as the same value.
function pretty.number(v)
  if math.type(v) == "integer" then
    return v == math.mininteger and "math.mininteger" or tostring(v)
  end
  if v ~= v then return "0/0" end
  if v == math.huge then return "math.huge" end
  if v == -math.huge then return "-math.huge" end
  local s = string.format("%.14g", v)
  if tonumber(s) ~= v then s = string.format("%.17g", v) end
  if not s:find("[%.eEn]") then s = s .. ".0" end    -- 1.0 stays a float
  return s
end

local function scalar(v)
  if type(v) == "string" then return pretty.quote(v) end
  if type(v) == "number" then return pretty.number(v) end
  if rawequal(v, null) then return "json.null" end
  return tostring(v)
end

local TYPE_ORDER = { number = 1, string = 2, boolean = 3 }

local function key_less(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then
    local oa, ob = TYPE_ORDER[ta] or 4, TYPE_ORDER[tb] or 4
    if oa ~= ob then return oa < ob end
    return ta < tb
  end
  if ta == "number" or ta == "string" then return a < b end
  if ta == "boolean" then return not a and b end
  return tostring(a) < tostring(b)
end

local function key_text(k)
  if type(k) == "string" and k:match("^[%a_][%w_]*$") and not RESERVED[k] then return k .. " = " end
  return "[" .. scalar(k) .. "] = "
end

-- The entries of t in print order: {prefix, value}.  pairs() honours
-- __pairs, so a proxy (a runbook's params) shows what it stands for.
local function entries(t)
  local n = 0
  while rawget(t, n + 1) ~= nil do n = n + 1 end
  local list, keys, values = {}, {}, {}
  for i = 1, n do list[i] = { "", rawget(t, i) } end
  for k, v in pairs(t) do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then
      keys[#keys + 1] = k
      values[k] = v
    end
  end
  table.sort(keys, key_less)
  for _, k in ipairs(keys) do list[#list + 1] = { key_text(k), values[k] } end
  return list
end

-- t on one line in at most `budget` characters, or nil when it does not fit.
-- `path` holds the tables being printed around this one.
local function inline(v, path, budget, depth)
  if type(v) ~= "table" or has_tostring(v) then
    local s = scalar(v)
    return #s <= budget and s or nil
  end
  if path[v] then return "<cycle>" end
  if depth > MAX_DEPTH then return "{...}" end
  local list = entries(v)
  if #list == 0 then return "{}" end
  path[v] = true
  local parts, used = {}, 4
  for i, e in ipairs(list) do
    local s = inline(e[2], path, budget - used - #e[1], depth + 1)
    if s == nil then
      path[v] = nil
      return nil
    end
    parts[i] = e[1] .. s
    used = used + #parts[i] + 2
    if used > budget then
      path[v] = nil
      return nil
    end
  end
  path[v] = nil
  return "{ " .. table.concat(parts, ", ") .. " }"
end

local function block(v, path, indent, budget, depth)
  if type(v) ~= "table" or has_tostring(v) then return scalar(v) end
  if path[v] then return "<cycle>" end
  if depth > MAX_DEPTH then return "{...}" end
  local one = inline(v, path, budget, depth)
  if one then return one end
  path[v] = true
  local inner = indent .. "  "
  local lines = { "{" }
  for _, e in ipairs(entries(v)) do
    lines[#lines + 1] = inner .. e[1] .. block(e[2], path, inner, WIDTH - #inner - #e[1] - 1, depth + 1) .. ","
  end
  lines[#lines + 1] = indent .. "}"
  path[v] = nil
  return table.concat(lines, "\n")
end

-- text cut after MAX_LINES lines or MAX_BYTES bytes, saying what was left out.
local function limit(text)
  local n, at = 0, 0
  while true do
    local nl = text:find("\n", at + 1, true)
    if nl == nil then break end
    n = n + 1
    if n >= MAX_LINES or nl > MAX_BYTES then break end
    at = nl
  end
  if #text <= MAX_BYTES and n < MAX_LINES then return text end
  local keep = at > 0 and at - 1 or MAX_BYTES
  local rest = text:sub(keep + 1)
  local _, lines = rest:gsub("\n", "")
  return text:sub(1, keep) .. string.format("\n... [output cut: %d more lines, %d bytes not shown]",
    lines + 1, #rest)
end

-- The text of one value.
function pretty.format(v)
  return limit(block(v, {}, "", WIDTH, 1))
end

return pretty
