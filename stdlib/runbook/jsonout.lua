-- runbook.jsonout: what `--json` prints (docs/json.md).
--
-- lua-cjson 2.1 encodes an empty Lua table as {} and has no way to say a
-- table is a list, and escapes "/" as "\/": a script reading `list --json`
-- with no runbooks would get an object where it expects an array, and paths
-- would read oddly.  So the shape is walked here: jsonout.array(t) marks a
-- list (empty or not), object members come out in sorted order (the same
-- input always gives the same bytes, so outputs can be diffed), and cjson
-- only encodes the scalars.
local cjson = require("cjson")

local jsonout = {}

local ARRAY = {}

-- t marked as a JSON array, even when empty.  Returns t.
function jsonout.array(t)
  return setmetatable(t or {}, ARRAY)
end

local function scalar(v)
  -- every "/" cjson writes is escaped; "\/" -> "/" keeps the escapes before it
  return (cjson.encode(v):gsub("\\/", "/"))
end

local function encode(v, out)
  if type(v) ~= "table" then
    out[#out + 1] = scalar(v)
    return
  end
  if getmetatable(v) == ARRAY or (next(v) ~= nil and #v > 0) then
    out[#out + 1] = "["
    for i = 1, #v do
      if i > 1 then out[#out + 1] = "," end
      encode(v[i], out)
    end
    out[#out + 1] = "]"
    return
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  out[#out + 1] = "{"
  for i, k in ipairs(keys) do
    if i > 1 then out[#out + 1] = "," end
    out[#out + 1] = scalar(k) .. ":"
    local x = v[k]
    if x == nil then x = v[tonumber(k)] end
    encode(x, out)
  end
  out[#out + 1] = "}"
end

-- The JSON text of v (tables of strings, numbers, booleans, tables).
function jsonout.encode(v)
  local out = {}
  encode(v, out)
  return table.concat(out)
end

-- v as one line of JSON on standard output (through ui.print, so what a
-- run marked secret is hidden here as everywhere).
function jsonout.print(v)
  require("runbook.ui").print(jsonout.encode(v))
end

return jsonout
