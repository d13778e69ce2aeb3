-- runbook.shellcomplete: `runbook __complete WORD...`, what the shell
-- completion scripts (dist/completion/) ask at each Tab.  WORD... are the
-- words after `runbook` up to the cursor, the last one the word being
-- completed (empty when the cursor follows a space).  It prints one
-- candidate a line, "word<TAB>description", and at most one directive line
-- the script acts on itself:
--   :files [EXT...]   also complete file names (ending in .EXT)
--   :dirs             also complete directory names
--   :nospace          do not add a space after the word (`-p dump=`)
-- Everything comes from the commands' own tables (cli.COMMANDS, their
-- options and synopsis), the config's targets and the runbooks' plans, so
-- a new command or option completes without touching the scripts.  It
-- never fails loudly: a broken config or runbook completes nothing.
local cli = require("runbook.cli")
local sys = require("runbook.sys")

local M = {}

local HELP = { name = "help", short = "h", help = "show this help" }

local function emit(out, word, desc)
  desc = desc and tostring(desc):gsub("[%c]+", " ") or ""
  out[#out + 1] = desc ~= "" and (word .. "\t" .. desc) or word
end

local function starts(s, prefix) return s:sub(1, #prefix) == prefix end

local function options_of(cmd)
  local all = {}
  for i, o in ipairs(cmd.options or {}) do all[i] = o end
  all[#all + 1] = HELP
  return all
end

local function by_long(opts, name)
  for _, o in ipairs(opts) do if o.name == name then return o end end
end

local function by_short(opts, c)
  for _, o in ipairs(opts) do if o.short == c then return o end end
end

-- The words before the cursor, read as src/args.c reads them: option
-- values (seen[name] = {values}), positionals, and the option whose value
-- the cursor is at (a value option ending the previous word).
local function scan(opts, words)
  local st = { seen = {}, pos = {}, pending = nil, dashdash = false }
  local function take(o, v)
    st.seen[o.name] = st.seen[o.name] or {}
    if v ~= nil then table.insert(st.seen[o.name], v) end
  end
  for _, w in ipairs(words) do
    if st.pending then
      take(st.pending, w)
      st.pending = nil
    elseif st.dashdash or w == "-" or not starts(w, "-") then
      st.pos[#st.pos + 1] = w
    elseif w == "--" then
      st.dashdash = true
    elseif starts(w, "--") then
      local name, v = w:match("^%-%-([^=]*)=(.*)$")
      local o = by_long(opts, name or w:sub(3))
      if o and o.value and v == nil then st.pending = o elseif o then take(o, v) end
    else
      for i = 2, #w do
        local o = by_short(opts, w:sub(i, i))
        if not o then break end
        if o.value then
          if i < #w then take(o, w:sub(i + 1)) else st.pending = o end
          break
        end
        take(o)
      end
    end
  end
  return st
end

local function last(st, name)
  local vs = st.seen[name]
  return vs and vs[#vs]
end

-- The plan of the runbook named by the first positional, or nil.
local function plan_of(st)
  local name = st.pos[1]
  if not name then return nil end
  local ok, run, plan = pcall(cli.load_plan, name)
  if ok and run then return plan end
end

local function targets(st, cur, out)
  local ok, cfg = pcall(require("runbook.config").load, last(st, "config"))
  if not ok or type(cfg) ~= "table" then return end
  local names = {}
  for k in pairs(cfg.targets or {}) do
    if type(k) == "string" then names[#names + 1] = k end
  end
  table.sort(names)
  for _, k in ipairs(names) do
    local t = cfg.targets[k]
    local desc = type(t) == "table" and rawget(t, "description") or nil
    if starts(k, cur) then emit(out, k, type(desc) == "string" and desc or "target") end
  end
end

local function steps(st, cur, out)
  local plan = plan_of(st)
  if not plan then return end
  for _, s in ipairs(plan.steps) do
    if starts(s.id, cur) then emit(out, s.id, string.format("step %d: %s", s.index, s.title)) end
  end
end

local function params(st, cur, out)
  local plan = plan_of(st)
  if not plan then return end
  for _, spec in ipairs(plan.param_list) do
    if starts(spec.name .. "=", cur) then emit(out, spec.name .. "=", spec.help) end
  end
  out.directive = ":nospace"
end

-- Transcripts in the default directory, newest first; for --resume only
-- the named runbook's when it has any (their names start with its name).
local function transcripts(st, cur, out, of_runbook)
  local dir = require("runbook.record").default_dir()
  local found = {}
  for _, f in ipairs(sys.listdir(dir) or {}) do
    if f:match("%.jsonl$") then
      local stt = sys.stat(dir .. "/" .. f)
      if stt and stt.type == "file" then found[#found + 1] = { name = f, mtime = stt.mtime } end
    end
  end
  local plan = of_runbook and plan_of(st)
  if plan then
    local safe = plan.name:gsub("[^%w%-_.]", "_")
    local mine = {}
    for _, t in ipairs(found) do
      if starts(t.name, safe .. "-") then mine[#mine + 1] = t end
    end
    if #mine > 0 then found = mine end
  end
  table.sort(found, function(a, b)
    if a.mtime ~= b.mtime then return a.mtime > b.mtime end
    return a.name > b.name
  end)
  for i = 1, math.min(#found, 100) do
    local path = dir .. "/" .. found[i].name
    if starts(path, cur) then emit(out, path, os.date("%Y-%m-%d %H:%M", found[i].mtime)) end
  end
  out.directive = ":files jsonl"
end

local function runbooks(cur, out)
  local seen = {}
  for _, dir in ipairs(cli.search_dirs()) do
    for _, f in ipairs(sys.listdir(dir) or {}) do
      local name = f:match("^(.+)%.lua$") or f:match("^(.+)%.md$")
      if name and not seen[name] and starts(name, cur) then
        seen[name] = true
        emit(out, name, "runbook in " .. dir)
      end
    end
  end
  out.directive = ":files lua md"
end

-- What completes an option's value: by the option's name where it means
-- something to the runbook, else by its metavar.
local function value_of(o, st, cur, out)
  if o.name == "target" then return targets(st, cur, out) end
  if o.name == "start-at" then return steps(st, cur, out) end
  if o.name == "param" then return params(st, cur, out) end
  if o.name == "resume" then return transcripts(st, cur, out, true) end
  local meta = o.value
  if meta == "TRANSCRIPT" then return transcripts(st, cur, out) end
  if meta == "DIR" then out.directive = ":dirs" return end
  if meta == "FILE" or meta == "PATH" then out.directive = ":files" end
end

-- What completes the Nth positional: the synopsis names it
-- ("NAME|FILE [options]", "TRANSCRIPT...", "FILE.md", "[TRANSCRIPT|DIR]...").
local function positional_kinds(cmd, n)
  local words = {}
  for w in (cmd.synopsis or ""):gmatch("%S+") do
    local bare = w:gsub("[%[%]]", "")
    if bare:match("^[A-Z]") then
      words[#words + 1] = bare
    end
  end
  local w = words[n] or words[#words]
  if w == nil or (n > #words and not w:find("%.%.%.$")) then return {} end
  local kinds = {}
  for k in w:gsub("%.%.%.$", ""):gmatch("[^|]+") do kinds[k] = true end
  return kinds
end

local function positional(cmd, st, cur, out)
  local kinds = positional_kinds(cmd, #st.pos + 1)
  if kinds.TRANSCRIPT then transcripts(st, cur, out) end
  if kinds.NAME and kinds.FILE then runbooks(cur, out)
  elseif kinds["FILE.md"] then out.directive = ":files md"
  elseif kinds.FILE and not kinds.TRANSCRIPT then out.directive = ":files" end
  if kinds.DIR and not out.directive then out.directive = ":dirs" end
end

local function option_names(opts, st, cur, out)
  local short = cur:match("^%-(%w)$")
  if short and by_short(opts, short) then emit(out, cur, by_short(opts, short).help) end
  for _, o in ipairs(opts) do
    local flag = "--" .. o.name
    if (o.list or not st.seen[o.name]) and starts(flag, cur) then emit(out, flag, o.help) end
  end
end

local function commands(cur, out)
  for _, name in ipairs(cli.COMMANDS) do
    if starts(name, cur) then emit(out, name, require("runbook.cmd." .. name).summary) end
  end
  for _, f in ipairs({ "--help", "--version" }) do
    if starts(f, cur) and cur ~= "" then emit(out, f) end
  end
end

local function find_command(name)
  for _, c in ipairs(cli.COMMANDS) do
    if c == name then return require("runbook.cmd." .. c) end
  end
end

-- The candidates for words (the last one is being typed).
function M.candidates(words)
  local out = {}
  local cur = words[#words] or ""
  if #words <= 1 then
    commands(cur, out)
    return out
  end
  local cmd = find_command(words[1])
  if not cmd then return out end
  local opts = options_of(cmd)
  local st = scan(opts, { table.unpack(words, 2, #words - 1) })
  local long, glued = cur:match("^(%-%-[^=]+)=(.*)$")
  if st.pending then
    value_of(st.pending, st, cur, out)
  elseif long and not st.dashdash and by_long(opts, long:sub(3)) then
    local vals = {}
    value_of(by_long(opts, long:sub(3)), st, glued, vals)
    for _, v in ipairs(vals) do out[#out + 1] = long .. "=" .. v end
    out.directive = vals.directive
  elseif starts(cur, "-") and not st.dashdash then
    option_names(opts, st, cur, out)
  else
    positional(cmd, st, cur, out)
  end
  return out
end

-- argv = { "__complete", WORD... }.  Always exit 0: a shell prints
-- nothing better for an error than an empty list.
function M.main(argv)
  local ok, out = pcall(M.candidates, { table.unpack(argv, 2) })
  if not ok then return 0 end
  local lines = {}
  for i, l in ipairs(out) do lines[i] = l .. "\n" end
  if out.directive then lines[#lines + 1] = out.directive .. "\n" end
  io.stdout:write(table.concat(lines))
  return 0
end

return M
