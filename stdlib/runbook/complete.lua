-- runbook.complete: what the REPL offers for the word before the cursor,
-- and which documented call a value is (for help(value)).
--
-- Completing must never act: a Tab press calls no function of the
-- session's values, so no __index function (a lazy primitive's
-- installer, a params proxy), no __pairs, no network.  Only raw reads:
-- next and rawget on tables, debug.getmetatable and a metatable's
-- __index when that is a table (as every connection handle has:
-- `db:<Tab>` lists Handle's methods).  A primitive not installed yet
-- (`sql` before the session first names it) is offered by its name, from
-- the files of stdlib/runbook/prim, and its fields from the entries of
-- runbook.help, without loading it.
local help = require("runbook.help")
local sys = require("runbook.sys")

local complete = {}

local IDENT = "^[%a_][%w_]*$"
local MAX_CHAIN = 8     -- __index tables followed, at most

local KEYWORDS = { "and", "break", "do", "else", "elseif", "end", "false", "for", "function",
  "goto", "if", "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while" }

-- The tables a lookup in v reads, in order: v itself when it is a table,
-- then each __index that is a table (a function is never called).
local function lookup_tables(v)
  local list, seen = {}, {}
  if type(v) == "table" then
    list[1] = v
    seen[v] = true
  end
  local mt = debug.getmetatable(v)
  while mt and #list < MAX_CHAIN do
    local idx = rawget(mt, "__index")
    if type(idx) ~= "table" or seen[idx] then break end
    seen[idx] = true
    list[#list + 1] = idx
    mt = debug.getmetatable(idx)
  end
  return list
end

-- v[k] as a plain lookup would find it, reading raw.
local function raw_index(v, k)
  for _, t in ipairs(lookup_tables(v)) do
    local x = rawget(t, k)
    if x ~= nil then return x end
  end
  return nil
end

-- The primitives a session has not installed yet: named by their files.
local function pending_primitives(G)
  local names = {}
  for _, f in ipairs(sys.listdir(sys.datadir() .. "/stdlib/runbook/prim") or {}) do
    local name = f:match("^([%w_]+)%.lua$")
    if name and rawget(G, name) == nil then names[name] = true end
  end
  return names
end

-- A global as the prompt sees it: the session's own, then the verbs
-- (G); a primitive not installed yet is the string "lazy".
local function global(env, G, name)
  local v = rawget(env, name)
  if v == nil then v = rawget(G, name) end
  if v == nil and pending_primitives(G)[name] then return "lazy", true end
  return v, false
end

-- The value a dotted path names (a, a.b.c), and whether its head is a
-- primitive not installed yet (then the value is nil).
local function resolve(env, G, path)
  local head, rest = path:match("^([%a_][%w_]*)(.*)$")
  if not head then return nil end
  local v, lazy = global(env, G, head)
  if lazy then return nil, rest == "" and head or nil end
  for k in rest:gmatch("%.([%a_][%w_]*)") do
    if v == nil then return nil end
    v = raw_index(v, k)
  end
  return v
end

local function add_keys(t, prefix, methods, out)
  for k, x in next, t do
    if type(k) == "string" and k:match(IDENT) and k:sub(1, 2) ~= "__" and k:sub(1, #prefix) == prefix
        and (not methods or type(x) == "function") then
      out[k] = true
    end
  end
end

-- The fields (or, after ":", the methods) of v starting with prefix.
local function members(v, prefix, methods, out)
  for _, t in ipairs(lookup_tables(v)) do add_keys(t, prefix, methods, out) end
end

-- The documented fields of a primitive not installed yet.
local function declared_members(name, prefix, out)
  for _, it in ipairs(help.entries()) do
    local field = it.name:match("^" .. name .. "%.([%w_]+)$")
    if field and field:sub(1, #prefix) == prefix then out[field] = true end
  end
end

local function globals(env, G, prefix, out)
  add_keys(env, prefix, false, out)
  add_keys(G, prefix, false, out)
  for name in pairs(pending_primitives(G)) do
    if name:sub(1, #prefix) == prefix then out[name] = true end
  end
  for _, k in ipairs(KEYWORDS) do
    if k:sub(1, #prefix) == prefix then out[k] = true end
  end
end

-- The completions of word (what is before the cursor, back to a space or
-- an operator), each the whole word: "sq" -> {"sql"}, "db:q" ->
-- {"db:query"}, sorted.
function complete.candidates(env, G, word)
  local names = {}
  local path, sep, prefix = word:match("^([%a_][%w_%.]*)([%.:])([%w_]*)$")
  if path and not path:find("%.%.") and path:sub(-1) ~= "." then
    local v, lazy = resolve(env, G, path)
    if lazy and sep == "." then
      declared_members(lazy, prefix, names)
    elseif v ~= nil then
      members(v, prefix, sep == ":", names)
    end
  elseif word == "" or word:match(IDENT) then
    globals(env, G, word, names)
    path, sep = nil, ""
  else
    return {}
  end
  local list = {}
  for k in pairs(names) do list[#list + 1] = (path and (path .. sep) or "") .. k end
  table.sort(list)
  return list
end

-- The documented name of value x, found by raw reads only: a global or a
-- field of one (http.get, json), or a method of a value the session holds
-- (db.query is "db:query" when the function comes from prim/sql.lua).
function complete.name_of(env, G, x)
  for _, t in ipairs({ env, G }) do
    for k, v in next, t do
      if rawequal(v, x) and type(k) == "string" then return k end
    end
  end
  local src = type(x) == "function" and debug.getinfo(x, "S").source or ""
  local file = src:match("/prim/([%w_]+)%.lua$")
  for _, it in ipairs(help.entries()) do
    local a, sep, m = it.name:match("^([%w_]+)([.:])([%w_]+)$")
    if sep == "." and rawequal(resolve(env, G, a .. "." .. m), x) then return it.name end
    if sep == ":" and it.section.id == file then
      for _, t in ipairs({ env, G }) do
        for _, v in next, t do
          if (type(v) == "table" or type(v) == "userdata") and rawequal(raw_index(v, m), x) then
            return it.name
          end
        end
      end
    end
  end
  return nil
end

return complete
