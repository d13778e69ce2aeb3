-- runbook.json: JSON decoding as a runbook sees it.
--
-- lua-cjson 2.1 (Debian's) pushes every JSON number with lua_pushnumber,
-- so on Lua 5.4 `{"a":1}` decodes to a = 1.0: `%d` formats refuse it,
-- table keys from it differ from 1, and the REPL would print 1.0 for a
-- count.  It has no option for integers, so the decoded value is walked
-- once and every float that holds an integer exactly (|x| <= 2^53, where
-- a double still counts by one) becomes that integer.  JSON does not
-- tell 1 from 1.0, so nothing is lost.
local cjson = require("cjson")

local json = {}

local EXACT = 2 ^ 53

local function integers(v, seen)
  if type(v) == "number" then
    if math.type(v) == "float" and v == math.floor(v) and v >= -EXACT and v <= EXACT then
      return math.tointeger(v)
    end
    return v
  end
  if type(v) ~= "table" or seen[v] then return v end
  seen[v] = true
  for k, x in next, v do
    if type(x) == "number" or type(x) == "table" then rawset(v, k, integers(x, seen)) end
  end
  return v
end

-- cjson.decode with JSON integers as Lua integers.  Raises as cjson does.
function json.decode(text)
  return integers(cjson.decode(text), {})
end

json.encode = cjson.encode
json.null = cjson.null

return json
