-- runbook.markdown: a team's markdown checklist read as a runbook's plan.
--
--   local doc, err = markdown.parse(text, "runbooks/restore.md")
--
-- doc = { file, name, title, intro = {items}, steps = {{id, title, line,
-- items}}, reference = {{title, line, items}}, severities = {{name, text,
-- line}}, templates = {{name, body, line}}, params = {order = {names},
-- [name] = {name, secret, placeholder, line}} }; err is "FILE:LINE: why".
--
-- The steps are the document's own sections, as a reader counts them: its
-- `##` headings (the level under the title that the document uses), else
-- its top-level numbered list ("1) Triage", "4. Check the database"), else
-- its top-level checklist items.  A section that only holds a severity
-- table, message templates or a contact table is reference, not a step.
-- Items: check (a `- [ ]` the operator marks done, not done or skipped),
-- blank (a "Time detected: ____" to fill), command (a shell line of a
-- fenced bash/sh/shell/console block, or an inline `code` span that starts
-- with a program), sql (a fenced sql block), choice (one command per
-- platform or manager: "Linux: `...` / Windows: `...`"), link (to another
-- markdown runbook), table, code (a block of another language), heading
-- (a section nested in a step), and note (any other text).
local blocks = require("runbook.mdblocks")
local mdtext = require("runbook.mdtext")
local shellwords = require("runbook.shellwords")

local M = {}
local trim = blocks.trim

local SHELL = { bash = true, sh = true, shell = true, zsh = true, console = true, [""] = false }
local SQL = { sql = true, postgresql = true, postgres = true, psql = true, pgsql = true, plpgsql = true }
local TEXT = { markdown = true, md = true, text = true, txt = true, plain = true, plaintext = true }
local CLASSES = { readonly = "read", read = "read", write = "write", destructive = "destructive" }

-- Words that start an inline command: `curl -fsS ...`, `sudo systemctl ...`.
local PROGRAMS = {}
for w in ([[sudo curl wget systemctl service journalctl docker docker-compose kubectl helm pm2
  supervisorctl nssm psql pg_dump pg_restore pg_isready redis-cli mysql mysqladmin git npm npx
  node python python3 nginx certbot openssl tail head cat less grep egrep awk sed jq df du free
  uptime top htop ps pgrep pkill kill killall ls find stat ss netstat lsof dig nslookup host ping
  traceroute curl.exe rm cp mv tar gzip ssh scp rsync aws gcloud az terraform ansible make crontab
  dmesg vmstat iostat env printenv echo chmod chown mkdir touch ln tee watch timeout date
  Restart-Service Get-Service Stop-Service Start-Service Get-Process Stop-Process Get-EventLog
  Test-NetConnection Invoke-WebRequest sc net iisreset]]):gmatch("%S+") do PROGRAMS[w] = true end

local PLATFORMS = {
  { "powershell", "windows" }, { "windows", "windows" }, { "nssm", "windows" }, { "iis", "windows" },
  { "macos", "macos" }, { "mac", "macos" }, { "os x", "macos" }, { "osx", "macos" },
  { "linux", "linux" }, { "ubuntu", "linux" }, { "debian", "linux" }, { "rhel", "linux" },
  { "systemd", "systemd" }, { "pm2", "pm2" }, { "supervisor", "supervisor" },
  { "compose", "compose" }, { "docker", "docker" }, { "kubernetes", "kubernetes" },
  { "k8s", "kubernetes" },
}

local function slug(s)
  return (s:lower():gsub("[^%w]+", "-"):gsub("^%-+", ""):gsub("%-+$", ""):sub(1, 48))
end

-- Inline markup a heading or item says nothing with: **bold**, `code`'s
-- backticks are kept (a command), links become their text.
local function plain(s)
  return trim((s:gsub("%*%*(.-)%*%*", "%1"):gsub("__(.-)__", "%1"):gsub("%[([^%]]*)%]%b()", "%1")))
end

local function platform_of(label)
  local low = label:lower()
  for _, p in ipairs(PLATFORMS) do
    if low:find(p[1], 1, true) then return p[2] end
  end
end

-- Whether an inline code span is a command: its first word is a program
-- (looked at before the line is parsed, so a command with a broken quote
-- is an error, not a note).
local function is_command(code)
  local first, rest = code:match("^%s*([^%s]+)(.*)$")
  if not first then return false end
  return PROGRAMS[first] == true or PROGRAMS[first:match("[^/]*$")] == true and rest:match("%S") ~= nil
    or first:match("^%./") ~= nil
end

local function is_sql(code)
  local verb = code:match("^%s*(%a+)")
  verb = verb and verb:upper()
  return verb == "SELECT" or verb == "UPDATE" or verb == "DELETE" or verb == "INSERT" or
    verb == "WITH" or verb == "VACUUM" or verb == "ANALYZE" or verb == "ALTER" or verb == "DROP"
end

-- What a wiki did to a command's characters, undone: typographic quotes
-- (a Confluence or Word page turns ' and " into ‘ ’ “ ”, which the shell
-- takes as letters: the command runs, wrongly), HTML entities of an
-- exported page (&amp;&amp;, &gt;), and no-break spaces.
local AS_TYPED = {
  ["\226\128\152"] = "'", ["\226\128\153"] = "'", ["\226\128\156"] = '"', ["\226\128\157"] = '"',
  ["\194\160"] = " ", ["\226\128\175"] = " ",
}
local ENTITIES = { amp = "&", lt = "<", gt = ">", quot = '"', apos = "'", nbsp = " ", ["#39"] = "'",
  ["#34"] = '"', ["#38"] = "&", ["#60"] = "<", ["#62"] = ">" }

local function as_typed(code)
  if not code:find("[\194\226&]") then return code end
  code = code:gsub("\226\128[\152\153\156\157\175]", AS_TYPED):gsub("\194\160", " ")
  return (code:gsub("&(#?%w+);", function(name) return ENTITIES[name:lower()] end))
end
M.as_typed = as_typed

-- ---- placeholders -------------------------------------------------------

local HTML_TAGS = { br = true, b = true, i = true, code = true, pre = true, p = true, a = true,
  em = true, strong = true, sup = true, sub = true, kbd = true, details = true, summary = true }
local SECRET_NAME = { "password", "passwd", "secret", "token", "api_key", "apikey", "credential",
  "database_url", "redis_url", "dsn", "private_key", "access_key" }

local function param_name(raw)
  return (raw:lower():gsub("[^%w]+", "_"):gsub("^_+", ""):gsub("_+$", ""))
end

local function is_secret_name(name)
  for _, w in ipairs(SECRET_NAME) do
    if name:find(w, 1, true) then return true end
  end
  return false
end

-- Each placeholder of text: fn(raw, name) for <DB_HOST>, <user>, $VAR,
-- ${VAR}, your-domain and [Service Name].
local function each_placeholder(text, fn)
  for raw, inner in text:gmatch("(<([%a][%w_ %-]*)>)") do
    if not HTML_TAGS[inner:lower()] then fn(raw, param_name(inner)) end
  end
  for raw, name in text:gmatch("(%${?([%u_][%u%d_]*)}?)") do fn(raw, param_name(name)) end
  for raw in text:gmatch("%f[%w%-](your%-[%w%-]+)") do fn(raw, param_name(raw:sub(6))) end
  for raw, inner, after in text:gmatch("(%[([%a][%w _%-]*)%])()") do     -- not a link's [text](url)
    if text:sub(after, after) ~= "(" and inner:find("[%s_%u]") then fn(raw, param_name(inner)) end
  end
end

-- The params text names, registered in doc.params; the list of names.
local function collect_params(doc, text, line)
  local names, seen = {}, {}
  each_placeholder(text, function(raw, name)
    if name == "" or seen[name] then return end
    seen[name] = true
    names[#names + 1] = name
    if not doc.params[name] then
      doc.params[name] = { name = name, secret = is_secret_name(name), placeholder = raw, line = line }
      doc.params.order[#doc.params.order + 1] = name
    end
  end)
  return names
end

-- Text with every placeholder replaced by a plain word, for the shell
-- parser and the classifier (<DB_HOST> is no redirect).
local function neutral(text)
  local out = text
  each_placeholder(text, function(raw)
    out = out:gsub(raw:gsub("%p", "%%%0"), "PLACEHOLDER")
  end)
  return out
end

-- ---- items ---------------------------------------------------------------

local function command_item(doc, cmd, line, override, label)
  local plain_cmd = neutral(cmd)
  local words, err = shellwords.split(plain_cmd)
  if not words then
    return nil, string.format("%s:%d: cannot read the command `%s`: %s", doc.file, line, cmd, err)
  end
  local class, why = shellwords.classify(plain_cmd, words)
  return { kind = "command", cmd = cmd, line = line, class = override or class,
           why = override and ("marked " .. override) or why, label = label,
           platform = label and platform_of(label), params = collect_params(doc, cmd, line) }
end

local function sql_item(doc, sql, line, override)
  local class, why = shellwords.sql_class(sql)
  return { kind = "sql", sql = sql, line = line, class = override or class, why = why,
           params = collect_params(doc, sql, line) }
end

-- The shell lines of a fence: a trailing backslash joins the next line, a
-- here-document runs to its terminator; console blocks hold commands after
-- a "$ " prompt and output otherwise.
local function shell_lines(fence)
  local out, i, lines = {}, 1, fence.lines
  while i <= #lines do
    local l, at = lines[i], i
    local prompt = l:match("^%s*[%$#]%s+(.*)$")
    if fence.lang == "console" then l = prompt end
    if l and l:match("%S") and not l:match("^%s*#") then
      while l:match("\\%s*$") and lines[i + 1] do
        i = i + 1
        l = l:gsub("\\%s*$", "") .. " " .. trim(lines[i])
      end
      local tag = l:match("<<%-?%s*['\"]?([%w_]+)['\"]?")
      while tag and lines[i + 1] and trim(lines[i]) ~= tag do
        i = i + 1
        l = l .. "\n" .. lines[i]
      end
      out[#out + 1] = { text = trim(as_typed(l)), line = fence.line + at }
    end
    i = i + 1
  end
  return out
end

local function fence_items(doc, fence, override, heading, out)
  local class = override
  for a in pairs(fence.attrs) do class = CLASSES[a] or class end
  if SHELL[fence.lang] then
    for _, l in ipairs(shell_lines(fence)) do
      local item, err = command_item(doc, l.text, l.line, class)
      if not item then return nil, err end
      out[#out + 1] = item
    end
  elseif SQL[fence.lang] then
    out[#out + 1] = sql_item(doc, as_typed(table.concat(fence.lines, "\n")), fence.line + 1, class)
  elseif TEXT[fence.lang] or fence.lang == "" then
    local body = table.concat(fence.lines, "\n")
    local kind = (heading or ""):lower():find("templ") or body:find("%[[%a][%w _%-]*%]") and
      (body:lower():find("incident") or body:lower():find("update") or body:lower():find("resolved"))
    out[#out + 1] = { kind = kind and "template" or "code", name = plain(fence.lines[1] or ""),
                      body = body, line = fence.line }
  else
    out[#out + 1] = { kind = "code", lang = fence.lang, body = table.concat(fence.lines, "\n"), line = fence.line }
  end
  return true
end

-- The inline code spans of text with the label just before each
-- ("Linux: `...`"): {code, label}.
local function code_spans(text)
  local spans, pos = {}, 1
  while true do
    local s, e, code = text:find("`([^`]+)`", pos)
    if not s then break end
    local before = text:sub(pos, s - 1)
    local label = before:match("([%w][%w%s/%-%.%(%)]-)%s*:%s*%**%s*$")
    spans[#spans + 1] = { code = trim(as_typed(code)), label = label and plain(label) }
    pos = e + 1
  end
  return spans
end

local function link_items(doc, text, line, out)
  for label, target in text:gmatch("%[([^%]]+)%]%(([^%)%s]+)%)") do
    if target:match("%.md$") and not target:match("^%a+://") then
      out[#out + 1] = { kind = "link", text = label, target = target, line = line }
    end
  end
end

-- A list item or paragraph: what it asks of the operator.
local function text_items(doc, b, override, out)
  local text, line = b.text, b.line
  local blank = text:match("^(.-)_____*") or text:match("^(.-)%[%s*___+%s*%]")   -- both need ___
  if blank and not b.check then
    out[#out + 1] = { kind = "blank", label = plain(blank):gsub("[:%s]+$", ""), line = line }
  end
  link_items(doc, text, line, out)
  local cmds = 0
  for _, span in ipairs(code_spans(text)) do
    if is_command(span.code) then
      local item, err = command_item(doc, span.code, line, override, span.label)
      if not item then return nil, err end
      out[#out + 1] = item
      cmds = cmds + 1
    elseif is_sql(span.code) then
      out[#out + 1] = sql_item(doc, span.code, line, override)
      cmds = cmds + 1
    end
  end
  -- "Health: `curl ...`" or "Linux: `a` / PM2: `b`" is all said by its
  -- commands and their labels: no note beside them, the text before the
  -- first colon leads the first command
  local only_labels = cmds > 0 and
    text:gsub("`[^`]*`", ""):gsub("[^:`]*:", ""):gsub("[%s/%.,;%*%-]", "") == ""
  if b.check then       -- after its commands: "- [ ] Health is green: `curl ...`"
    out[#out + 1] = { kind = "check", text = plain(text:gsub(":?%s*`[^`]*`", "")), done = b.check == "x",
                      line = line }
  elseif only_labels then
    out[#out - cmds + 1].lead = plain(text:match("^([^:`]*):") or "")
  elseif not blank and cmds == 0 then
    out[#out + 1] = { kind = "note", text = plain(text), line = line }
  elseif cmds > 0 then
    table.insert(out, #out - cmds + 1, { kind = "note", text = plain(text), line = line })
  end
  return true
end

-- Consecutive commands labelled with different platforms or managers
-- become one choice: only the one that fits the target runs.
local function group_choices(items)
  local out, i = {}, 1
  while i <= #items do
    local it, j = items[i], i
    local seen = {}
    while items[j] and items[j].kind == "command" and items[j].platform and
        not seen[items[j].platform] and (j == i or items[j].line - items[j - 1].line <= 1) do
      seen[items[j].platform] = true
      j = j + 1
    end
    if j - i >= 2 then
      out[#out + 1] = { kind = "choice", options = { table.unpack(items, i, j - 1) }, line = it.line }
      i = j
    else
      out[#out + 1] = it
      i = i + 1
    end
  end
  return out
end

-- The items of a section's blocks.
local function section_items(doc, section)
  local out, override = {}, nil
  for _, b in ipairs(section.blocks) do
    local ok, err = true, nil
    if b.type == "comment" then
      local said = b.text:lower():match("^runbook:%s*(%a+)")
      override = said and CLASSES[said]
    elseif b.type == "heading" then
      out[#out + 1] = { kind = "heading", text = plain(b.text), level = b.level, line = b.line }
    elseif b.type == "fence" then
      ok, err = fence_items(doc, b, override, section.title, out)
      override = nil
    elseif b.type == "table" then
      out[#out + 1] = { kind = "table", rows = b.rows, line = b.line }
    elseif b.type == "item" or b.type == "para" then
      ok, err = text_items(doc, b, override, out)
      override = nil
    end
    if not ok then return nil, err end
  end
  return group_choices(out)
end

-- ---- sections --------------------------------------------------------------

local ACTIONS = { check = true, blank = true, command = true, sql = true, choice = true, link = true }
local SEVERITY = { "^p%d", "^sev%s?%d", "^s%d$", "^critical", "^high", "^medium", "^low" }

-- The level a table row or a list line names first ("P0", "SEV1",
-- "Critical"), or nil.
local function level_of(text)
  local name = plain(text):match("^[%(%[]?([%w]+[%s%-]?%d?)")
  if not name then return nil end
  name = name:gsub("[%s%-]$", "")
  for _, pat in ipairs(SEVERITY) do
    if name:lower():match(pat) then return name end
  end
end

-- The levels of a severity section, from its table's rows or from its
-- list lines ("- **P1** (Major): Response time 30 min"): the runbook's
-- severity choices.  Whether the section is one.
local function add_level(doc, name, text, line)
  for _, l in ipairs(doc.severities) do
    if l.name:lower() == name:lower() then return end     -- the matrix and its response times
  end
  doc.severities[#doc.severities + 1] = { name = name, text = text, line = line }
end

local function severities_of(doc, section, items)
  local title = (section.title or ""):lower()
  if not title:find("sever") and not title:find("priorit") and not title:find("response time") then
    return false
  end
  for _, it in ipairs(items) do
    if it.kind == "table" then
      for _, row in ipairs(it.rows) do
        local name = level_of(row[1] or "")
        if name then add_level(doc, name, plain(table.concat(row, " | ", 2)), it.line) end
      end
    elseif it.kind == "note" then
      local name = level_of(it.text)
      if name then
        local rest = it.text:sub(#name + 1):gsub("^[%*%)%]%s:%-]+", ""):gsub("^\226\128[\147\148]%s*", "")
        add_level(doc, name, plain(rest), it.line)
        it.kind = "level"
      end
    end
  end
  return true
end

-- A section holding nothing to do but tables, templates or code (severity
-- levels, contacts, message templates): reference.
local function is_reference(items)
  local shown = false
  for _, it in ipairs(items) do
    if ACTIONS[it.kind] then return false end
    if it.kind == "table" or it.kind == "template" or it.kind == "level" then shown = true end
    if it.kind == "note" and not shown then return false end
  end
  return shown
end

-- What a message template is for, from its first words: the alert that
-- opens an incident, a status update, the all-clear, the report after.
local ROLES = { { "resolv", "resolved" }, { "all%-clear", "resolved" }, { "all clear", "resolved" },
  { "update", "update" }, { "post%-mortem", "report" }, { "postmortem", "report" }, { "report", "report" },
  { "alert", "alert" }, { "declared", "alert" }, { "investigating", "alert" } }

local function template_role(body)
  local head = (body:match("^%s*([^\n]*)") or ""):lower()
  for _, r in ipairs(ROLES) do
    if head:find(r[1]) then return r[2] end
  end
end

local function add_section(doc, section)
  local items, err = section_items(doc, section)
  if not items then return nil, err end
  local levels = severities_of(doc, section, items)
  for _, it in ipairs(items) do
    if it.kind == "template" then
      it.role = template_role(it.body)
      doc.templates[#doc.templates + 1] = { name = it.name, role = it.role, body = it.body, line = it.line }
    end
  end
  if section.title == nil then
    doc.intro = items
  elseif is_reference(items) then
    doc.reference[#doc.reference + 1] = { title = section.title, line = section.line, items = items,
                                          severity = levels }
  else
    local id, n = slug(section.title), 1
    while doc.ids[id] do n = n + 1; id = slug(section.title) .. "-" .. n end
    doc.ids[id] = true
    doc.steps[#doc.steps + 1] = { id = id, title = section.title, line = section.line, items = items }
  end
  return true
end

-- How the document counts its steps: "heading" (at which level),
-- "numbered" or "checklist"; nil when it has none.
local function step_mode(bs, title_level)
  local level
  for _, b in ipairs(bs) do
    if b.type == "heading" and b.level > title_level and (not level or b.level < level) then level = b.level end
  end
  if level then return "heading", level end
  local top
  for _, b in ipairs(bs) do
    if b.type == "item" and (not top or b.indent < top) then top = b.indent end
  end
  for _, b in ipairs(bs) do
    if b.type == "item" and b.indent == top and b.ordered then return "numbered", top end
  end
  for _, b in ipairs(bs) do
    if b.type == "item" and b.indent == top and b.check then return "checklist", top end
  end
end

-- Whether block b starts a new section in the document's mode.
local function starts_section(b, mode, level)
  if mode == "heading" then return b.type == "heading" and b.level == level end
  if mode == "numbered" then return b.type == "item" and b.indent == level and b.ordered end
  return b.type == "item" and b.indent == level and b.check ~= nil
end

local function sections(bs, first, mode, level)
  local list, cur = {}, { blocks = {} }
  for i = first, #bs do
    local b = bs[i]
    if starts_section(b, mode, level) then
      list[#list + 1] = cur
      cur = { title = plain(b.type == "heading" and b.text or b.text:gsub("`", "")), line = b.line, blocks = {} }
      if b.type == "item" then      -- the item itself: its commands, its check
        cur.blocks[1] = mode == "checklist" and b or { type = "para", text = b.text, line = b.line, head = true }
      end
    else
      cur.blocks[#cur.blocks + 1] = b
    end
  end
  list[#list + 1] = cur
  return list
end

-- "Declare the severity from the matrix above", as a note or a check,
-- in a document with a severity table: the operator chooses one of the
-- table's levels, recorded as a severity event (mdimport).
local DECIDE = { "declare", "assign", "set ", "decide", "determine", "choose", "pick", "classify" }

local function mark_severity_items(doc)
  if #doc.severities == 0 then return end
  for _, s in ipairs(doc.steps) do
    for _, it in ipairs(s.items) do
      local low = (it.kind == "note" or it.kind == "check") and it.text:lower() or ""
      if low:find("severity", 1, true) then
        for _, w in ipairs(DECIDE) do
          if low:find(w, 1, true) then it.kind, it.levels = "severity", doc.severities; break end
        end
      end
    end
  end
end

-- An item that names its own step ("1) Triage & communicate") is the
-- step's title, not a note of it.
local function drop_title_notes(doc)
  for _, s in ipairs(doc.steps) do
    local first = s.items[1]
    if first and first.kind == "note" and first.line == s.line and first.text == s.title:gsub("`", "") then
      table.remove(s.items, 1)
    end
  end
end

function M.parse(text, file)
  local normal, repaired = mdtext.normalize(text)
  local bs, err = blocks.read(normal, file)
  if not bs then return nil, err end
  local doc = { file = file, name = (file:match("([^/]+)$") or file):gsub("%.[%w]+$", ""),
    intro = {}, steps = {}, reference = {}, severities = {}, templates = {},
    params = { order = {} }, ids = {}, repaired = repaired,
    nlines = select(2, normal:gsub("\n", "")) + (normal:match("[^\n]$") and 1 or 0) }
  local first = 1
  if bs[1] and bs[1].type == "heading" and bs[1].level == 1 then
    doc.title, doc.title_line, first = plain(bs[1].text), bs[1].line, 2
  end
  doc.title = doc.title or doc.name
  local mode, level = step_mode({ table.unpack(bs, first) }, doc.title_line and 1 or 0)
  if not mode then
    return nil, string.format("%s:1: no steps: the document has no sections (## headings), " ..
      "no numbered list and no checklist (- [ ] items)", file)
  end
  for _, section in ipairs(sections(bs, first, mode, level)) do
    local ok, e = add_section(doc, section)
    if not ok then return nil, e end
  end
  drop_title_notes(doc)
  mark_severity_items(doc)
  if #doc.steps == 0 then
    return nil, string.format("%s:1: no steps: every section is reference (tables, templates)", file)
  end
  doc.ids = nil
  return doc
end

return M
