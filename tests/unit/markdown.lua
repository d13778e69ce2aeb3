-- runbook.markdown, runbook.mdblocks, runbook.mdtext and runbook.shellwords:
-- pure Lua, run by lua5.4 with stdlib/ on package.path (tests/CMakeLists.txt).
-- Each example under examples/markdown/ is read as a person would count it.
local SOURCE = assert(os.getenv("RB_SOURCE_DIR"), "RB_SOURCE_DIR not set")
package.path = SOURCE .. "/stdlib/?.lua;" .. package.path
local markdown = require("runbook.markdown")
local mdtext = require("runbook.mdtext")
local shellwords = require("runbook.shellwords")

local check = dofile(SOURCE .. "/tests/unit/lib/check.lua")
local test, eq = check.test, check.eq

local function read(name)
  local path = SOURCE .. "/examples/markdown/" .. name
  local f = assert(io.open(path))
  local doc, err = markdown.parse(f:read("a"), "examples/markdown/" .. name)
  f:close()
  return assert(doc, err)
end

local function titles(doc)
  local t = {}
  for _, s in ipairs(doc.steps) do t[#t + 1] = s.title end
  return table.concat(t, " | ")
end

-- Every item of kind (choices opened) across the doc's steps.
local function items(doc, kind)
  local out = {}
  for _, s in ipairs(doc.steps) do
    for _, it in ipairs(s.items) do
      if it.kind == kind then out[#out + 1] = it end
      for _, o in ipairs(it.options or {}) do if o.kind == kind then out[#out + 1] = o end end
    end
  end
  return out
end

local function class_of(doc, prefix)
  for _, c in ipairs(items(doc, "command")) do
    if c.cmd:sub(1, #prefix) == prefix then return c.class end
  end
  error("no command " .. prefix)
end

test("a numbered on-call checklist", function()
  local doc = read("oncall-checklist.md")
  eq(titles(doc), "Triage & communicate | Check the service | Check the database | Mitigate | Hand over", "steps")
  local choice = doc.steps[2].items[2]
  eq(choice.kind, "choice", "step 2 item 2")
  eq(#choice.options, 3, "platforms offered")
  eq(choice.options[1].platform .. "," .. choice.options[2].platform .. "," .. choice.options[3].platform,
    "linux,pm2,windows", "platforms")
  eq(doc.steps[4].items[2].kind, "choice", "systemd / PM2 / NSSM sub-items")
  eq(class_of(doc, "pg_isready"), "read", "pg_isready")
  eq(class_of(doc, "sudo systemctl restart"), "write", "a restart")
  eq(#items(doc, "blank"), 2, "blanks")
  eq(#items(doc, "check"), 4, "checks")
  eq(table.concat(doc.params.order, ","), "health_url,database_url", "params")
  eq(doc.params.database_url.secret, true, "DATABASE_URL is secret")
end)

test("a long incident checklist with phases, severities and templates", function()
  local doc = read("incident-response.md")
  eq(titles(doc), "Phase 1: Detection | Phase 2: Investigation | Phase 3: Mitigation | Phase 4: Recovery", "steps")
  eq(#doc.reference, 2, "severity levels and templates are reference")
  eq(#doc.severities, 3, "severities")
  eq(doc.severities[1].name, "P0", "first severity")
  eq(#doc.templates, 2, "templates")
  eq(class_of(doc, "pg_restore --clean"), "destructive", "a restore")
  eq(class_of(doc, "psql \"$DATABASE_URL\" -At <<"), "read", "readonly by comment (psql reading a script)")
  eq(class_of(doc, "pg_restore --list"), "read", "readonly by the fence's {readonly}")
  eq(class_of(doc, "sudo systemctl stop"), "write", "a stop")
  local sql = items(doc, "sql")
  eq(#sql, 1, "one sql block")
  eq(sql[1].class, "read", "the investigation's sql")
  eq(doc.steps[2].items[1].kind, "heading", "### nested in its phase")
  eq(#items(doc, "blank"), 3, "blanks")
  eq(doc.params.backup_file.placeholder, "<BACKUP_FILE>", "<BACKUP_FILE>")
  eq(doc.params.redis_url.secret, true, "$REDIS_URL is secret")
end)

test("a checklist of links", function()
  local doc = read("links.md")
  eq(#doc.steps, 4, "one step per item")
  local links = items(doc, "link")
  eq(#links, 2, "markdown links, not the https one")
  eq(links[1].target, "./oncall-checklist.md", "link target")
end)

test("symptoms, impact, investigation, resolution", function()
  local doc = read("api-latency.md")
  eq(titles(doc), "Symptoms | Impact | Investigation | Resolution", "steps")
  eq(class_of(doc, "psql \"$DATABASE_URL\" -c"), "destructive", "pg_terminate_backend")
  eq(class_of(doc, "curl -fsS -X POST"), "write", "a POST")
  eq(class_of(doc, "curl -fsS -o /dev/null"), "read", "a GET to /dev/null")
  eq(doc.params.pid.placeholder, "<PID>", "the pid to end")
end)

test("on-call procedures: matrices and templates are reference", function()
  local doc = read("oncall-procedures.md")
  eq(titles(doc), "When paged", "steps")
  eq(#doc.reference, 4, "reference sections (severity matrix, response times, escalation, templates)")
  eq(#doc.severities, 3, "the response-time lines name the matrix's levels again, not new ones")
  eq(doc.severities[1].name .. doc.severities[3].name, "SEV1SEV3", "severities")
  eq(#doc.templates, 3, "templates")
  eq(doc.templates[1].role .. "," .. doc.templates[2].role .. "," .. doc.templates[3].role, "alert,update,resolved",
    "what each template is for")
  local sev = items(doc, "severity")
  eq(#sev, 1, "'Declare the severity from the matrix above' is a severity choice")
  eq(#sev[1].levels, 3, "the matrix's levels")
end)

test("placeholders of every shape become params", function()
  local doc = assert(markdown.parse("# T\n\n## A\n\n- `curl -fsS https://your-domain/health`\n" ..
    "- `redis-cli -h <REDIS_HOST> ping`\n- `echo [Service Name] ${API_TOKEN}`\n", "p.md"))
  eq(table.concat(doc.params.order, ","), "domain,redis_host,api_token,service_name", "params")
  eq(doc.params.domain.placeholder, "your-domain", "your-domain")
  eq(doc.params.api_token.secret, true, "a token is secret")
  local mdimport = require("runbook.mdimport")
  local src = mdimport.to_lua(doc)
  assert(src:find('default = host_of(target.redis)', 1, true), "<REDIS_HOST> from the target's redis")
  -- a name that is a Lua keyword, a placeholder with a quote and a brace in its help
  doc = assert(markdown.parse('# T\n\n## A\n\n- `echo <do> "$X}"`\n', "k.md"))
  for _, code in ipairs({ mdimport.to_lua(doc), mdimport.to_aligned_lua(doc), mdimport.to_aligned_lua(doc, true) }) do
    assert(load(code, "=k", "t", {}), "a keyword placeholder's runbook loads")
  end
end)

test("severity levels from list lines, and a link followed inline", function()
  local doc = assert(markdown.parse("# T\n\n## Response times\n\n- **P0** (Critical): respond in 15 min\n" ..
    "- P1 - Major: 30 min\n\n## Go\n\n- [ ] Declare the severity\n- [Next](./next.md)\n", "s.md"))
  eq(#doc.steps, 1, "the response times are reference")
  eq(doc.severities[1].name .. "," .. doc.severities[2].name, "P0,P1", "levels from the lines")
  eq(doc.severities[2].text, "Major: 30 min", "what the line says of it")
  local mdimport = require("runbook.mdimport")
  assert(mdimport.to_lua(doc):find('checklist("./next.md", { offer = "Next" })', 1, true), "a link is offered")
  assert(load(mdimport.to_aligned_lua(doc, true), "=inline", "t", {}), "the inline chunk loads")
end)

test("errors name the file and line", function()
  local _, err = markdown.parse("# T\n\n## A\n\n```bash\necho hi\n", "x.md")
  eq(err, "x.md:5: the code block opened here is never closed (no closing ```)", "unclosed fence")
  _, err = markdown.parse("# T\n\n## A\n\n- run `echo 'oops`\n", "y.md")
  eq(err, "y.md:5: cannot read the command `echo 'oops`: unclosed quote at column 6", "bad command")
  _, err = markdown.parse("# T\n\nJust prose.\n", "z.md")
  eq(err:match("^z%.md:1: no steps"), "z.md:1: no steps", "no steps")
  _, err = markdown.parse("# T\n\n## Severity\n\n| P1 | bad |\n|--|--|\n", "r.md")
  eq(err:match("^r%.md:1: no steps"), "r.md:1: no steps", "reference only")
end)

test("text as written: CRLF, BOM, mojibake", function()
  local doc = assert(markdown.parse("\239\187\191# Restore \195\162\226\130\172\226\128\157 fast\r\n\r\n" ..
    "## Step 1\r\n- [ ] caf\195\131\194\169 \240\159\148\165\r\n", "m.md"))
  eq(doc.title, "Restore \226\128\148 fast", "em dash repaired")
  eq(doc.steps[1].items[1].text, "caf\195\169 \240\159\148\165", "é repaired, emoji kept")
  eq(select(2, mdtext.normalize("na\195\175ve \195\131 x")), 0, "real text left alone")
end)

test("shell lines", function()
  local cases = {
    { "curl -fsS https://x/health", "read" }, { "curl -X POST https://x", "write" },
    { "curl --data a=1 https://x", "write" }, { "wget -qO- https://x", "read" },
    { "sudo systemctl restart app", "write" }, { "systemctl status app", "read" },
    { "journalctl -u app | tail -50", "read" }, { "redis-cli -h db ping", "read" },
    { "redis-cli -a pw GET k", "read" }, { "redis-cli SET k v", "write" },
    { "redis-cli FLUSHALL", "destructive" }, { "psql -c 'SELECT 1'", "read" },
    { "psql -c 'UPDATE t SET a = 1'", "write" }, { "psql", "write" },
    { "psql \"$DATABASE_URL\" -Atc 'select 1'", "read" }, { "psql -Atc 'delete from t where a = 1'", "destructive" },
    { "pg_restore -d app x.dump", "destructive" }, { "rm -rf /tmp/x", "destructive" },
    { "rm /tmp/x", "write" }, { "docker compose logs api", "read" },
    { "docker compose up -d", "write" }, { "git log -5", "read" }, { "git checkout v1", "write" },
    { "df -h > /tmp/df", "write" }, { "grep x y 2>&1 >/dev/null", "read" },
    { "kubectl get pods", "read" }, { "kubectl delete pod x", "destructive" },
    { "find /var/log -name '*.gz' -delete", "write" }, { "sed -n 1,5p f", "read" },
    { "sed -i s/a/b/ f", "write" }, { "backdrop --now", "write" }, { "TZ=UTC date", "read" },
  }
  for _, c in ipairs(cases) do eq(shellwords.classify(c[1]), c[2], c[1]) end
  local w = assert(shellwords.split([[a "b c" 'd e' f\ g|h&&i # no]]))
  eq(table.concat(w, ","), "a,b c,d e,f g,|,h,&&,i", "split")
end)

test("import: Lua that loads, with each item in place", function()
  local mdimport = require("runbook.mdimport")
  for _, name in ipairs({ "oncall-checklist.md", "incident-response.md", "links.md", "api-latency.md",
      "oncall-procedures.md" }) do
    local src = mdimport.to_lua(read(name))
    assert(load(src, "=" .. name, "t", {}), "the import of " .. name .. " does not load")
  end
  local src = mdimport.to_lua(read("oncall-checklist.md"))
  assert(src:find('run("curl -fsS " .. sh_quote(p.health_url), "read", nil, "Health")', 1, true),
    "placeholder spliced, shell-quoted")
  assert(src:find('"read", { DATABASE_URL = p.database_url }', 1, true), "$DATABASE_URL through env")
  assert(src:find('{ platform = "pm2", label = "PM2", cmd = "pm2 list", class = "read" }', 1, true), "a choice")
  assert(src:find('check("Confirm health is green again")   -- line 26', 1, true), "check after its command")
  src = mdimport.to_lua(read("incident-response.md"))
  assert(src:find('{ "SELECT count(*) AS orders FROM orders", "read" },', 1, true), "sql statements split")
  local quoted = mdimport.to_lua(assert(markdown.parse('# T\n\n## A\n\n- `curl -s "http://h/<PATH>"`\n\n' ..
    "```sql\nBEGIN;\nDELETE FROM t WHERE id = <ID>;\nCOMMIT;\n```\n", "q.md")))
  assert(quoted:find('"curl -s \\"http://h/" .. dq_inner(p.path) .. "\\""', 1, true), "a value inside double quotes")
  assert(quoted:find('query("DELETE FROM t WHERE id = " .. sql_quote(p.id), "destructive")', 1, true),
    "SQL quoting, the block\'s own BEGIN/COMMIT left out")
  assert(src:find('param("database_url", { help = "$DATABASE_URL in the document (line 49)", secret = true, ' ..
    'default = env("DATABASE_URL") or target.db, required = true })', 1, true), "secret param from the environment, else the target")
end)

test("a markdown run: each step and item on the document's own line", function()
  local mdimport = require("runbook.mdimport")
  for _, name in ipairs({ "oncall-checklist.md", "incident-response.md", "links.md", "api-latency.md" }) do
    local doc = read(name)
    local seen = {}
    local env = setmetatable({
      runbook = function() end, param = function() end, env = function() end, target = {},
      step = function(title, _, fn)
        seen[#seen + 1] = { title = title, line = debug.getinfo(2, "l").currentline }
        local calls = {}
        local stub = function(...) calls[#calls + 1] = debug.getinfo(2, "l").currentline end
        local fenv = { check = stub, fill = stub, run = stub, query = stub, pick = stub, print = stub,
          log = { info = stub }, filled = {}, sh_quote = tostring }
        seen[#seen].calls = calls
        seen[#seen].fn, seen[#seen].fenv = fn, fenv
      end,
    }, { __index = _G })
    local src = mdimport.to_aligned_lua(doc)
    local chunk = assert(load(src, "@" .. name, "t", env))
    chunk(mdimport.helpers(env))
    eq(#seen, #doc.steps, name .. ": steps declared")
    for i, s in ipairs(doc.steps) do
      eq(seen[i].title, s.title, name .. " step " .. i)
      eq(seen[i].line, s.line, name .. " step " .. i .. "'s line")
    end
  end
end)

test("setext headings and block quotes", function()
  local doc = assert(markdown.parse("Restore\n=======\n\nCheck\n-----\n\n> **Warning:** drops the cache.\n" ..
    "> - [ ] Tell the team\n>\n> ```bash\n> ls /\n> ```\n\nFix\n---\n\n- `pm2 restart api`\n", "q.md"))
  eq(doc.title, "Restore", "the === heading is the title")
  eq(titles(doc), "Check | Fix", "the --- headings are the steps")
  eq(#items(doc, "check"), 1, "a quoted checklist item")
  eq(items(doc, "command")[1].cmd, "ls /", "a quoted fence")
  eq(items(doc, "command")[1].line, 11, "its line in the document")
  local _, err = markdown.parse("# T\n\n## A\n\n> ```bash\n> ls\n\n- after\n```\n", "u.md")
  eq(err, "u.md:5: the code block opened here is never closed (no closing ```)", "a fence the quote leaves open")
end)

-- Mutated examples (insertions of markdown's own marks, cuts, copies):
-- the reader returns a document or "FILE:LINE: why", never raises, and
-- every runbook made of a document loads.
test("mutated documents never crash the reader", function()
  local mdimport = require("runbook.mdimport")
  local texts = {}
  for _, name in ipairs({ "oncall-checklist.md", "incident-response.md", "links.md", "api-latency.md",
      "oncall-procedures.md" }) do
    local f = assert(io.open(SOURCE .. "/examples/markdown/" .. name, "rb"))
    texts[#texts + 1] = f:read("a")
    f:close()
  end
  local marks = { "`", "```", "\n", "#", "- [ ] ", "1) ", "<", ">", "[", "]", "(", ")", "|", "$", "'", '"',
    "\\", "___", "\r\n", "\t", "\226\128", "\195", "{readonly}", "<!--", "-->", "    ", "*", "===", "\n> " }
  math.randomseed(20261202)
  for round = 1, 3000 do
    local t = texts[math.random(#texts)]
    for _ = 1, math.random(1, 8) do
      local at, op = math.random(0, #t), math.random(3)
      if op == 1 then t = t:sub(1, at) .. marks[math.random(#marks)] .. t:sub(at + 1)
      elseif op == 2 then t = t:sub(1, at) .. t:sub(at + math.random(1, 40))
      else local from = math.random(0, #t); t = t:sub(1, at) .. t:sub(from, from + 30) .. t:sub(at + 1) end
    end
    local ok, doc, err = pcall(markdown.parse, t, "f.md")
    assert(ok, "round " .. round .. ": the reader raised: " .. tostring(doc))
    if doc then
      for _, src in ipairs({ mdimport.to_lua(doc), mdimport.to_aligned_lua(doc), mdimport.to_aligned_lua(doc, true) }) do
        local chunk, lerr = load(src, "=f", "t", {})
        assert(chunk, "round " .. round .. ": the runbook made of it does not load: " .. tostring(lerr))
      end
    else
      assert(type(err) == "string" and err:match("^f%.md:%d+: "), "round " .. round .. ": " .. tostring(err))
    end
  end
end)

check.finish()
