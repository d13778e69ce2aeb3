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
local shellwords = require("runbook.shellwords")

local M = {}

local function q(s) return string.format("%q", s):gsub("\\\n", "\\n") end

local KEYWORDS = {}
for w in ("and break do else elseif end false for function goto if in local nil not or repeat return " ..
    "then true until while"):gmatch("%a+") do KEYWORDS[w] = true end

-- p.name, or p["name"] where the name is no Lua identifier (<do>, your-1st).
local function pref(name)
  if KEYWORDS[name] or not name:match("^[%a_][%w_]*$") then return string.format("p[%q]", name) end
  return "p." .. name
end

-- The quote in force at byte i of text: nil, "'" or '"' (a backslash
-- escapes outside single quotes when escapes is true: the shell's rule).
local function quote_at(text, i, escapes)
  local quote, j = nil, 1
  while j < i do
    local c = text:sub(j, j)
    if quote == "'" then
      if c == "'" then quote = nil end
    elseif c == "\\" and escapes then
      j = j + 1
    elseif quote == '"' then
      if c == '"' then quote = nil end
    elseif c == "'" or c == '"' then
      quote = c
    end
    j = j + 1
  end
  return quote
end

-- How a value goes into a shell line or a SQL statement where the
-- placeholder stands: quoted whole outside quotes, escaped for the quotes
-- it stands inside ("http://host/<PATH>" stays one double-quoted word).
local SHELL_QUOTING = { none = "sh_quote", ["'"] = "sq_inner", ['"'] = "dq_inner" }
local SQL_QUOTING = { none = "sql_quote", ["'"] = "sql_inner", ['"'] = "sql_ident" }

-- Lua for a shell command with its placeholders: <DB_HOST>, your-domain
-- and [Service Name] become the param's value, quoted for where they
-- stand; $VAR stays for the shell to expand, from env = { VAR = p.var }.
-- quoting: SHELL_QUOTING (the default) or SQL_QUOTING.
local function command_expr(doc, text, quoting)
  quoting = quoting or SHELL_QUOTING
  local parts, env, pos = {}, {}, 1
  local spans = {}
  for _, name in ipairs(doc.params.order) do
    local ph = doc.params[name].placeholder
    if ph:sub(1, 1) == "$" then
      if text:find(ph, 1, true) then env[#env + 1] = string.format("%s = %s", ph:match("[%w_]+"), pref(name)) end
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
      local how = quoting[quote_at(text, sp.a, quoting == SHELL_QUOTING) or "none"]
      parts[#parts + 1] = how .. "(" .. pref(sp.name) .. ")"
      pos = sp.b + 1
    end
  end
  if pos <= #text or #parts == 0 then parts[#parts + 1] = q(text:sub(pos)) end
  return table.concat(parts, " .. "), #env > 0 and ("{ " .. table.concat(env, ", ") .. " }") or nil
end

local function sql_expr(doc, text)
  return (command_expr(doc, text, SQL_QUOTING))
end

local function command_code(doc, it)
  local expr, env = command_expr(doc, it.cmd)
  local args = { expr, string.format("%q", it.class) }
  local lead = it.lead ~= "" and it.lead or nil
  if env or lead then args[#args + 1] = env or "nil" end
  if lead then args[#args + 1] = q(lead) end
  return string.format("run(%s)", table.concat(args, ", "))
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

-- The Lua of one item: one or more statements, a line each.
local function item_code(doc, it)
  local k = it.kind
  if k == "check" then return "check(" .. q(it.text) .. ")" end
  if k == "blank" then return string.format("filled[%s] = fill(%s)", q(it.label), q(it.label)) end
  if k == "command" then return command_code(doc, it) end
  if k == "sql" then
    local list = {}
    for _, st in ipairs(statements(it.sql)) do
      -- the block's own BEGIN/COMMIT: a block that writes is one transaction (query_block)
      local verb = (st:match("^%a+") or ""):upper()
      if verb ~= "BEGIN" and verb ~= "COMMIT" and verb ~= "END" and not st:upper():match("^START%s+TRANSACTION") then
        list[#list + 1] = st
      end
    end
    if #list == 1 then return string.format("query(%s, %q)", sql_expr(doc, list[1]), it.class) end
    local out = {}
    for _, st in ipairs(list) do
      out[#out + 1] = string.format("  { %s, %q },", sql_expr(doc, st), (shellwords.sql_class(st)))
    end
    return "query_block({\n" .. table.concat(out, "\n") .. "\n}, " .. string.format("%q", it.class) .. ")"
  end
  if k == "choice" then
    local opts = {}
    for _, o in ipairs(it.options) do
      local expr, env = command_expr(doc, o.cmd)
      opts[#opts + 1] = string.format("  { platform = %q, label = %s, cmd = %s, class = %q%s },",
        o.platform, q(o.label or o.platform), expr, o.class, env and (", env = " .. env) or "")
    end
    return "pick {\n" .. table.concat(opts, "\n") .. "\n}"
  end
  if k == "link" then return string.format("checklist(%s, { offer = %s })", q(it.target), q(it.text)) end
  if k == "severity" then
    local names = {}
    for _, l in ipairs(it.levels) do names[#names + 1] = q(l.name .. (l.text ~= "" and (": " .. l.text) or "")) end
    return "declare_severity(" .. q(it.text) .. ", { " .. table.concat(names, ", ") .. " })"
  end
  if k == "table" then
    local rows = {}
    for _, r in ipairs(it.rows) do rows[#rows + 1] = table.concat(r, " | ") end
    return "print(" .. q(table.concat(rows, "\n")) .. ")"
  end
  return "print(" .. q(it.text or it.body or "") .. ")"
end

-- What a checklist item does, the same for every document: written at
-- the top of an import, loaded beside a markdown run (M.helpers).
local PRELUDE = [[
-- What a checklist item does (the same for every imported document).
local filled = {}                 -- the blanks filled in, by label
local function sh_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function sq_inner(s) return (tostring(s):gsub("'", "'\\''")) end     -- inside '...'
local function dq_inner(s) return (tostring(s):gsub('[\\"$`]', "\\%0")) end  -- inside "..."
local function sql_quote(s) return "'" .. tostring(s):gsub("'", "''") .. "'" end
local function sql_inner(s) return (tostring(s):gsub("'", "''")) end
local function sql_ident(s) return (tostring(s):gsub('"', '""')) end
-- A target key that may be one value or a list (health = { url, ... }).
local function first(v) if type(v) == "table" then return v[1] end return v end
-- The host of a URL (a placeholder such as <DB_HOST> from the target's db).
local function host_of(url)
  url = first(url)
  return url and (url:gsub("^%a[%w+.-]*://", ""):gsub("/.*$", ""):gsub("^.*@", ""):gsub(":%d+$", ""))
end

-- "- [ ] item": done, not done or skipped, asked and recorded.
local function check(item)
  return choose(item, { "done", "not done", "skipped" }, { default = "done" })
end

-- "Label: ____": the value typed, recorded (left empty, as on paper, is
-- an answer too: --yes takes it).
local function fill(label)
  return prompt(label, { allow_empty = true, default = "" })
end

-- Before a write: confirmed; before a destructive one: the target's name
-- (or the word "destroy") typed.  what: "" for a command, " SQL" for SQL.
local function ask_before(class, what, text)
  if class == "destructive" and dry_run then
    return log.info("would ask for the target's name typed before this destructive%s", what)
  end
  if class == "destructive" then
    local word = target.name or "destroy"
    if prompt("Destructive" .. what .. ": " .. text .. " -- type " .. word .. " to run it") ~= word then
      error("not run: " .. word .. " was not typed", 0)
    end
  else
    confirm("Run" .. what .. ": " .. text)
  end
end

-- A command of the document: a read runs (also in a dry run), a write or
-- a destructive one is asked first (ask_before); in a dry run a write is
-- shown, not run.
local function run(cmd, class, env, lead)
  if lead then print(lead .. ":") end
  if target.pm2_bin then      -- the target's pm2 binary for a line that starts with pm2
    cmd = cmd:gsub("^pm2%f[%s]", function() return sh_quote(target.pm2_bin) end)
  end
  if target.pm2_home and cmd:find("pm2", 1, true) then   -- the target's PM2, not ~/.pm2
    env = env or {}
    env.PM2_HOME = env.PM2_HOME or target.pm2_home
  end
  if class == "read" then
    local r = sh(cmd, { readonly = true, check = false, env = env, timeout = 120 })
    if r.code ~= 0 then log.warn("exit code %d: %s", r.code, cmd) end
    return r
  end
  ask_before(class, "", cmd)
  return sh(cmd, { env = env, timeout = 600 })
end

-- A SQL statement against the target's database: a read runs in a read
-- only transaction, a write is confirmed as a command is.
local function database()
  if not target.db then error("a sql block needs a target with db (--target)", 0) end
  return sql.connect(target.db)
end

local function show_rows(rows)
  for i, row in ipairs(rows) do
    local cells = {}
    for k, v in pairs(row) do cells[#cells + 1] = k .. "=" .. tostring(v) end
    table.sort(cells)
    print("  " .. i .. ": " .. table.concat(cells, " "))
  end
  return rows
end

local function query(stmt, class)
  local db = database()
  if class == "read" then return show_rows(db:query(stmt)) end
  ask_before(class, " SQL", stmt)
  return db:exec(stmt)
end

-- A SQL block of several statements {sql, class}: one that only reads runs
-- statement by statement; one that writes is confirmed once, then runs in
-- one transaction (its own BEGIN/COMMIT left out), all or nothing.
local function query_block(stmts, class)
  if class == "read" then
    for _, st in ipairs(stmts) do query(st[1], "read") end
    return
  end
  local shown = {}
  for i, st in ipairs(stmts) do shown[i] = st[1] end
  ask_before(class, " SQL", table.concat(shown, "; "))
  return database():tx(function(tx)
    for _, st in ipairs(stmts) do
      if st[2] == "read" then show_rows(tx:query(st[1])) else tx:exec(st[1]) end
    end
  end)
end

-- "Declare the severity": one of the document's levels, chosen (the most
-- severe first, the default), recorded as a severity event; the table's
-- levels stand for P0, P1, P2, P3 in the order the table lists them.
local function declare_severity(question, levels)
  local chosen = choose(question, levels, { default = levels[1] })
  local n = 1
  for i, l in ipairs(levels) do if l == chosen then n = i end end
  return severity { level = "P" .. math.min(n - 1, 3), action = "declared",
    reasons = { "the document's level " .. chosen } }
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

local HELPERS = "filled, sh_quote, sq_inner, dq_inner, sql_quote, sql_inner, sql_ident, first, host_of, check, fill, run, query, query_block, pick, declare_severity"

-- What the target gives a placeholder by its name: the database URL, the
-- Redis URL, the first service.  (-p wins; then the environment for a
-- $VAR; then this; else the operator is asked, once.)
local FROM_TARGET = {
  database_url = "target.db", db_url = "target.db", pg_url = "target.db", postgres_url = "target.db",
  redis_url = "target.redis", health_url = "first(target.health)", health = "first(target.health)",
  db_host = "host_of(target.db)", database_host = "host_of(target.db)", pg_host = "host_of(target.db)",
  redis_host = "host_of(target.redis)", service = "(target.services or {})[1]",
  service_name = "(target.services or {})[1]", app = "(target.services or {})[1]",
}

-- The fields of a param's declaration: help, secret, default, required.
local function param_fields(doc, name)
  local p = doc.params[name]
  local fields = { string.format("help = %s", q(p.placeholder .. " in the document (line " .. p.line .. ")")) }
  if p.secret then fields[#fields + 1] = "secret = true" end
  local sources = {}
  if p.placeholder:sub(1, 1) == "$" then sources[1] = string.format("env(%q)", p.placeholder:match("[%w_]+")) end
  sources[#sources + 1] = FROM_TARGET[name]
  if #sources > 0 then fields[#fields + 1] = "default = " .. table.concat(sources, " or ") end
  return fields
end

local function param_code(doc, name)
  local fields = param_fields(doc, name)
  fields[#fields + 1] = "required = true"     -- asked when nothing gives it; never the text "nil"
  return string.format("param(%q, { %s })", name, table.concat(fields, ", "))
end

-- The params of a followed checklist: name, help, secret and the same
-- default a run of it alone would have (linked_params asks for the rest).
local function inline_param_specs(doc)
  local specs = {}
  for _, name in ipairs(doc.params.order) do
    specs[#specs + 1] = string.format("{ name = %q, %s }", name, table.concat(param_fields(doc, name), ", "))
  end
  return specs
end

-- The document's contact and escalation tables (reference, not steps),
-- shown at the start of the first step: who to call is wanted during
-- the incident, not only in `show`.
local function reference_code(doc)
  local out = {}
  for _, it in ipairs(doc.intro) do       -- a contact table right under the title
    if it.kind == "table" then out[#out + 1] = "print(" .. q(doc.title .. ":") .. ") " .. item_code(doc, it) end
  end
  for _, r in ipairs(doc.reference) do
    for _, it in ipairs(r.items) do
      if it.kind == "table" and not r.severity then
        out[#out + 1] = "print(" .. q(r.title .. ":") .. ") " .. item_code(doc, it)
      end
    end
  end
  return table.concat(out, "\n")
end

-- The document's message templates as the runbook's (runbook.templates):
-- the first of each kind the cadence sends; [placeholders] are filled from
-- the run (its severity, steps, lead, and the blanks answered: "Incident
-- lead: ____" fills [Incident Lead]).
local SENT = { alert = true, update = true, resolved = true }

local function header_code(doc)
  local kinds, fields = {}, {}
  for _, t in ipairs(doc.templates) do
    if t.role and SENT[t.role] and not kinds[t.role] then
      kinds[t.role] = true
      fields[#fields + 1] = string.format("%s = %s", t.role, q(t.body))
    end
  end
  local templates = #fields > 0 and (", templates = { " .. table.concat(fields, ", ") .. " }") or ""
  return string.format("runbook { name = %q, title = %s%s }", doc.name, q(doc.title), templates)
end

local function step_code(s)
  return string.format("step(%s, { id = %q }, function(p)", q(s.title), s.id)
end

-- A readable runbook: the prelude written out, an item a line, each with
-- its line in the document.
function M.to_lua(doc)
  local out = {
    string.format("-- Imported from %s by `runbook import`: each step is a section of", doc.file),
    "-- the document, and each line says where in it the item stands.",
    header_code(doc), "",
  }
  out[#out + 1] = PRELUDE
  for _, name in ipairs(doc.params.order) do out[#out + 1] = param_code(doc, name) end
  out[#out + 1] = ""
  local reference = reference_code(doc)
  for i, s in ipairs(doc.steps) do
    out[#out + 1] = step_code(s) .. "   -- line " .. s.line
    if i == 1 and reference ~= "" then
      out[#out + 1] = "  " .. reference:gsub("\n", "\n  ") .. "   -- the document's reference tables"
    end
    for _, it in ipairs(s.items) do
      local code = item_code(doc, it):gsub("\n", "\n  ")
      out[#out + 1] = "  " .. code .. "   -- line " .. it.line
    end
    out[#out + 1] = "end)"
    out[#out + 1] = ""
  end
  return table.concat(out, "\n")
end

-- The same runbook with every step and item on its line of the document,
-- for `runbook run FILE.md`: an error or a position the engine reports
-- (FILE.md:24) is the document's own line.  The helpers come in as the
-- chunk's arguments (M.helpers makes them), not written out.  inline: a
-- checklist followed from another's link (runbook.mdrun.checklist): the
-- chunk returns its steps as functions instead of declaring them, and its
-- params come from the running one's (linked_params).
function M.to_aligned_lua(doc, inline)
  local lines = {}
  local function put(at, code)
    at = math.max(1, at)
    lines[at] = lines[at] and (lines[at] .. " " .. code) or code
  end
  local head = { "local " .. HELPERS .. (inline and ", linked_params, given = ..." or " = ...") }
  if inline then
    head[2] = "local p = linked_params(given, { " .. table.concat(inline_param_specs(doc), ", ") ..
      " }) local steps = {}"
  else
    head[2] = header_code(doc)
    for _, name in ipairs(doc.params.order) do head[#head + 1] = param_code(doc, name) end
  end
  put(1, table.concat(head, " "))
  for i, s in ipairs(doc.steps) do
    put(s.line, inline and string.format("steps[%d] = { title = %s, line = %d, run = function()", i,
      q(s.title), s.line) or step_code(s))
    if i == 1 then put(s.line, reference_code(doc):gsub("\n", " ")) end
    for _, it in ipairs(s.items) do put(it.line, (item_code(doc, it):gsub("\n", " "))) end
    local next_step = doc.steps[i + 1]
    put(next_step and next_step.line - 1 or doc.nlines, inline and "end }" or "end)")
  end
  if inline then put(doc.nlines, "return steps") end
  local n = 0
  for at in pairs(lines) do n = math.max(n, at) end
  for at = 1, n do lines[at] = lines[at] or "" end
  return table.concat(lines, "\n")
end

-- The helpers of an aligned chunk, loaded in the runbook's environment
-- env (so they call its verbs): the values for its `...`.
function M.helpers(env)
  -- named as the host's own file, so an error's position is the
  -- document's line that called the helper, not the helper's
  local okh, host = pcall(require, "runbook.host")     -- (not in the pure-Lua unit tests)
  local name = okh and ("@" .. host.datadir .. "/stdlib/runbook/mdimport.lua") or "=markdown runbook helpers"
  local chunk = assert(load(PRELUDE .. "\nreturn " .. HELPERS, name, "t", env))
  return chunk()
end

return M
