-- runbook.mdimport: the Lua runbook a markdown checklist stands for.
--
--   local source = mdimport.to_lua(doc)   -- doc from runbook.markdown.parse
--
-- The source uses only what docs/authoring.md documents (runbook, param,
-- step, choose, prompt, confirm, sh, sql.connect, log, target, env), plus
-- a few small local functions at its top that say what a checklist item
-- does, so a team can read it and grow it.  `runbook run FILE.md` runs
-- this same source, so a document and its import have the same plan.
-- Every step and item carries its line in the document as a comment.
local M = {}

local function q(s) return string.format("%q", s):gsub("\\\n", "\\n") end

-- Lua for a shell command with its placeholders: <DB_HOST>, your-domain
-- and [Service Name] become the param's value, shell-quoted; $VAR stays
-- for the shell to expand, from env = { VAR = p.var }.
local function command_expr(doc, text)
  local parts, env, pos = {}, {}, 1
  local spans = {}
  for _, name in ipairs(doc.params.order) do
    local ph = doc.params[name].placeholder
    if ph:sub(1, 1) == "$" then
      if text:find(ph, 1, true) then env[#env + 1] = string.format("%s = p.%s", ph:match("[%w_]+"), name) end
    else
      local s = 1
      while true do
        local a, b = text:find(ph, s, true)
        if not a then break end
        spans[#spans + 1] = { a = a, b = b, name = name }
        s = b + 1
      end
    end
  end
  table.sort(spans, function(x, y) return x.a < y.a end)
  for _, sp in ipairs(spans) do
    if sp.a >= pos then
      if sp.a > pos then parts[#parts + 1] = q(text:sub(pos, sp.a - 1)) end
      parts[#parts + 1] = "sh_quote(p." .. sp.name .. ")"
      pos = sp.b + 1
    end
  end
  if pos <= #text or #parts == 0 then parts[#parts + 1] = q(text:sub(pos)) end
  return table.concat(parts, " .. "), #env > 0 and ("{ " .. table.concat(env, ", ") .. " }") or nil
end

local function command_code(doc, it, ind)
  local expr, env = command_expr(doc, it.cmd)
  local args = { expr, string.format("%q", it.class) }
  local lead = it.lead ~= "" and it.lead or nil
  if env or lead then args[#args + 1] = env or "nil" end
  if lead then args[#args + 1] = q(lead) end
  return string.format("%srun(%s)   -- line %d", ind, table.concat(args, ", "), it.line)
end

-- The statements of a SQL block, split at semicolons outside quotes.
local function statements(sql)
  local out, cur, quote = {}, {}, nil
  for c in sql:gmatch(".") do
    if quote then
      if c == quote then quote = nil end
      cur[#cur + 1] = c
    elseif c == "'" or c == '"' then
      quote = c
      cur[#cur + 1] = c
    elseif c == ";" then
      out[#out + 1] = table.concat(cur)
      cur = {}
    else
      cur[#cur + 1] = c
    end
  end
  out[#out + 1] = table.concat(cur)
  local kept = {}
  for _, s in ipairs(out) do
    s = s:gsub("^%s+", ""):gsub("%s+$", "")
    if s ~= "" then kept[#kept + 1] = s end
  end
  return kept
end

local function item_code(doc, it, ind)
  local k = it.kind
  if k == "check" then return string.format("%scheck(%s)   -- line %d", ind, q(it.text), it.line) end
  if k == "blank" then
    return string.format("%sfilled[%s] = fill(%s)   -- line %d", ind, q(it.label), q(it.label), it.line)
  end
  if k == "command" then return command_code(doc, it, ind) end
  if k == "sql" then
    local out = {}
    for _, st in ipairs(statements(it.sql)) do
      local expr = command_expr(doc, st)
      out[#out + 1] = string.format("%squery(%s, %q)   -- line %d", ind, expr, it.class, it.line)
    end
    return table.concat(out, "\n")
  end
  if k == "choice" then
    local opts = {}
    for _, o in ipairs(it.options) do
      local expr, env = command_expr(doc, o.cmd)
      opts[#opts + 1] = string.format("%s  { platform = %q, label = %s, cmd = %s, class = %q%s },",
        ind, o.platform, q(o.label or o.platform), expr, o.class, env and (", env = " .. env) or "")
    end
    return string.format("%spick {   -- line %d\n%s\n%s}", ind, it.line, table.concat(opts, "\n"), ind)
  end
  if k == "link" then
    return string.format("%slog.info(%s)   -- line %d: another runbook", ind,
      q("next, as the document says: runbook run " .. it.target:gsub("^%./", "") .. " (" .. it.text .. ")"), it.line)
  end
  if k == "heading" then return string.format("%sprint(%s)   -- line %d", ind, q(it.text), it.line) end
  if k == "table" then
    local rows = {}
    for _, r in ipairs(it.rows) do rows[#rows + 1] = table.concat(r, " | ") end
    return string.format("%sprint(%s)   -- line %d", ind, q(table.concat(rows, "\n")), it.line)
  end
  local text = it.text or it.body or ""
  return string.format("%sprint(%s)   -- line %d", ind, q(text), it.line)
end

local PRELUDE = [[
-- What a checklist item does (the same for every imported document).
local filled = {}                 -- the blanks filled in, by label
local function sh_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- "- [ ] item": done, not done or skipped, asked and recorded.
local function check(item)
  return choose(item, { "done", "not done", "skipped" }, { default = "done" })
end

-- "Label: ____": the value typed, recorded.
local function fill(label)
  return prompt(label, { allow_empty = true })
end

-- A command of the document: a read runs (also in a dry run), a write is
-- confirmed, a destructive one needs the target's name (or the word
-- "destroy") typed; in a dry run a write is shown, not run.
local function run(cmd, class, env, lead)
  if lead then print(lead .. ":") end
  if class == "read" then
    local r = sh(cmd, { readonly = true, check = false, env = env, timeout = 120 })
    if r.code ~= 0 then log.warn("exit code %d: %s", r.code, cmd) end
    return r
  end
  if class == "destructive" then
    local word = target.name or "destroy"
    if prompt("Destructive: " .. cmd .. "\nType " .. word .. " to run it") ~= word then
      error("not run: " .. word .. " was not typed", 0)
    end
  else
    confirm("Run: " .. cmd)
  end
  return sh(cmd, { env = env, timeout = 600 })
end

-- A SQL statement against the target's database: a read runs in a read
-- only transaction, a write is confirmed as a command is.
local function query(stmt, class)
  if not target.db then error("a sql block needs a target with db (--target)", 0) end
  local db = sql.connect(target.db)
  if class == "read" then
    local rows = db:query(stmt)
    for i, row in ipairs(rows) do
      local cells = {}
      for k, v in pairs(row) do cells[#cells + 1] = k .. "=" .. tostring(v) end
      table.sort(cells)
      print("  " .. i .. ": " .. table.concat(cells, " "))
    end
    return rows
  end
  if class == "destructive" then
    local word = target.name or "destroy"
    if prompt("Destructive SQL: " .. stmt .. "\nType " .. word .. " to run it") ~= word then
      error("not run: " .. word .. " was not typed", 0)
    end
  else
    confirm("Run SQL: " .. stmt)
  end
  return db:exec(stmt)
end

-- One command per platform or manager: the one for the target's manager,
-- else the one for Linux, else for systemd; the others are noted.
local function pick(options)
  local chosen
  for _, want in ipairs({ target.manager or "linux", "linux", "systemd" }) do
    for _, o in ipairs(options) do
      if not chosen and o.platform == want then chosen = o end
    end
  end
  for _, o in ipairs(options) do
    if o ~= chosen then log.info("not for this host (%s): %s", o.label, o.cmd) end
  end
  if not chosen then return log.warn("no command here is for this host") end
  return run(chosen.cmd, chosen.class, chosen.env, chosen.label)
end
]]

local function param_code(doc, name)
  local p = doc.params[name]
  local fields = { string.format("help = %s", q(p.placeholder .. " in the document (line " .. p.line .. ")")) }
  if p.secret then fields[#fields + 1] = "secret = true" end
  if p.placeholder:sub(1, 1) == "$" then
    fields[#fields + 1] = string.format("default = env(%q)", p.placeholder:match("[%w_]+"))
  end
  return string.format("param(%q, { %s })", name, table.concat(fields, ", "))
end

function M.to_lua(doc)
  local out = {
    string.format("-- Imported from %s by `runbook import`: each step is a section of", doc.file),
    "-- the document, and each line says where in it the item stands.",
    string.format("runbook { name = %q, title = %s }", doc.name, q(doc.title)),
    "",
  }
  for _, name in ipairs(doc.params.order) do out[#out + 1] = param_code(doc, name) end
  out[#out + 1] = ""
  out[#out + 1] = PRELUDE
  for _, s in ipairs(doc.steps) do
    out[#out + 1] = string.format("step(%s, { id = %q }, function(p)   -- line %d", q(s.title), s.id, s.line)
    for _, it in ipairs(s.items) do out[#out + 1] = item_code(doc, it, "  ") end
    out[#out + 1] = "end)"
    out[#out + 1] = ""
  end
  return table.concat(out, "\n")
end

return M
