-- runbook.lint: the static half of the closed author surface, for
-- `runbook check`.  It names every use of what a runbook is not offered
-- (os.execute, io.open, debug, require("runbook.sys"), ...) with its
-- file:line and the words the run-time refusal uses (runbook.surface).
--
-- Why a scan of the source's tokens and not a load that records what the
-- chunk touches: the declaration phase runs only the top level, so a
-- recording environment would see nothing of a step's body, and a branch
-- that runs only when a service is down would never be seen at all.  The
-- tokens see every line.  Strings and comments are skipped as tokens, so
-- "os.execute" in a log message or a comment is no use of it.  What a
-- token scan cannot see (os reached through a local alias, a computed
-- field name) the run-time refusal still stops.
local surface = require("runbook.surface")

local lint = {}

-- The end of a long bracket opened at i ("[[", "[==["), or nil.
local function long_bracket(src, i)
  local eqs = src:match("^%[(=*)%[", i)
  if not eqs then return nil end
  local _, e = src:find("]" .. eqs .. "]", i + #eqs + 2, true)
  return e or #src, #eqs + 2
end

-- The end of the quoted string opened at i.
local function quoted(src, i)
  local q = src:sub(i, i)
  local j = i + 1
  while j <= #src do
    local c = src:sub(j, j)
    if c == "\\" then j = j + 2
    elseif c == q or c == "\n" then return j
    else j = j + 1 end
  end
  return #src
end

-- One token at i: kind ("name", "string", "op", "skip"), its end, its text.
local function token(src, i)
  local c = src:sub(i, i)
  if c:match("%s") then return "skip", (src:find("[^%s]", i) or #src + 1) - 1 end
  if src:sub(i, i + 1) == "--" then
    local e = long_bracket(src, i + 2)
    if e then return "skip", e end
    return "skip", (src:find("\n", i, true) or #src + 1) - 1
  end
  if c == '"' or c == "'" then
    local e = quoted(src, i)
    return "string", e, src:sub(i + 1, e - 1)
  end
  if c == "[" then
    local e, open = long_bracket(src, i)
    if e then return "string", e, src:sub(i + open, e - open) end
  end
  local name = src:match("^[%a_][%w_]*", i)
  if name then return "name", i + #name - 1, name end
  local num = src:match("^%d[%w%.]*", i) or src:match("^%.%d[%w%.]*", i)
  if num then return "number", i + #num - 1, num end
  local op = src:match("^%.%.%.?", i) or src:match("^[=~<>]=", i) or src:match("^::", i) or c
  return "op", i + #op - 1, op
end

-- The tokens of src, each {kind, text, line}, without blanks and comments.
function lint.tokens(src)
  local toks, i, line = {}, 1, 1
  while i <= #src do
    local kind, e, text = token(src, i)
    if kind ~= "skip" then toks[#toks + 1] = { kind = kind, text = text, line = line } end
    local _, nl = src:sub(i, e):gsub("\n", "")
    line = line + nl
    i = e + 1
  end
  return toks
end

-- Whether toks[i] is a name used as a global: not a field (after . or :),
-- not a declared local, not a table key or an assignment target.
local function global_use(toks, i)
  local prev, nxt = toks[i - 1], toks[i + 1]
  if prev and prev.kind == "op" and (prev.text == "." or prev.text == ":") then return false end
  if prev and prev.kind == "name" and (prev.text == "local" or prev.text == "function") then return false end
  if nxt and nxt.kind == "op" and nxt.text == "=" then return false end
  return true
end

-- The refusal for a use of os.X or io.X at toks[i], or nil.
local function library_use(toks, i)
  local lib, dot, field = toks[i], toks[i + 1], toks[i + 2]
  if not (dot and field and dot.text == "." and field.kind == "name") then return nil end
  if lib.text == "os" and surface.OS_ALLOWED[field.text] then return nil end
  return surface.refusal(lib.text .. "." .. field.text)
end

-- The refusal for require "x" / require("x") at toks[i], or nil.
local function require_use(toks, i)
  local arg = toks[i + 1]
  if arg and arg.text == "(" then arg = toks[i + 2] end
  if not (arg and arg.kind == "string") then return nil end
  return surface.refused_module(arg.text)
end

-- The names the file declares itself: after `local`, in a function's
-- parameters, as a for loop's variables.  A use of one of them is its
-- own, whatever its name (a scan of tokens does not see scopes).
local function declared(toks)
  local names = {}
  local function list(i)   -- a, b, c starting at toks[i]
    while toks[i] and toks[i].kind == "name" do
      names[toks[i].text] = true
      if not (toks[i + 1] and toks[i + 1].text == ",") then break end
      i = i + 2
    end
  end
  for i, t in ipairs(toks) do
    if t.kind == "name" and (t.text == "local" or t.text == "for") then
      local j = i + 1
      if toks[j] and toks[j].text == "function" then j = j + 1 end
      list(j)
    elseif t.kind == "name" and t.text == "function" then
      local j = i + 1
      while toks[j] and toks[j].text ~= "(" do j = j + 1 end
      list(j + 1)
    end
  end
  return names
end

-- The problems of one token, or nil.
local function problem(toks, i, own)
  local t = toks[i]
  if t.kind ~= "name" or own[t.text] or not global_use(toks, i) then return nil end
  if t.text == "os" or t.text == "io" then return library_use(toks, i) end
  if t.text == "require" then return require_use(toks, i) end
  if surface.DENIED_GLOBALS[t.text] then return surface.refusal(t.text) end
  return nil
end

-- The modules beside the runbook it requires (require("lib.team") is
-- lib/team.lua next to it): author code, checked as the runbook is.
local function beside(file, toks)
  local dir = file:match("^(.*)/[^/]*$") or "."
  local paths = {}
  for i, t in ipairs(toks) do
    if t.kind == "name" and t.text == "require" then
      local arg = toks[i + 1]
      if arg and arg.text == "(" then arg = toks[i + 2] end
      if arg and arg.kind == "string" and package.searchpath(arg.text, package.path) == nil then
        paths[#paths + 1] = package.searchpath(arg.text, dir .. "/?.lua")
      end
    end
  end
  return paths
end

-- "file:line: os.execute is not available to runbooks; use exec{...}",
-- one for each use in the source src of file, appended to problems.
-- Returns problems and the paths of the modules beside file it requires.
function lint.check(file, src, problems)
  local toks = lint.tokens(src)
  local own = declared(toks)
  for i = 1, #toks do
    local why = problem(toks, i, own)
    if why then problems[#problems + 1] = string.format("%s:%d: %s", file, toks[i].line, why) end
  end
  return problems, beside(file, toks)
end

-- lint.check on a file read from disk, and on the modules beside it that
-- it requires.
function lint.check_file(file, problems, seen)
  seen = seen or {}
  if seen[file] then return problems end
  seen[file] = true
  local f = io.open(file, "rb")
  if not f then return problems end
  local src = f:read("a")
  f:close()
  local _, modules = lint.check(file, src, problems)
  for _, path in ipairs(modules) do lint.check_file(path, problems, seen) end
  return problems
end

return lint
