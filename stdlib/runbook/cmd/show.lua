-- runbook show: print a runbook's plan as a checklist; nothing is run.
local cli = require("runbook.cli")
local jsonout = require("runbook.jsonout")
local ui = require("runbook.ui")

local M = {
  summary = "print a runbook's plan without running it",
  synopsis = "NAME|FILE",
  description = "Print a runbook's plan as a numbered checklist. Nothing is run.",
  options = {
    { name = "json", help = "print the plan as one JSON object, for scripts (docs/json.md)" },
  },
}

-- The plan as `show --json` gives it.  A secret param's default is "***",
-- as on the screen.
local function json_plan(plan)
  local h = plan.header
  local params, steps = jsonout.array(), jsonout.array()
  for i, p in ipairs(plan.param_list) do
    local default = p.default
    if default ~= nil and p.secret then default = "***" end
    if type(default) == "function" or type(default) == "userdata" then default = tostring(default) end
    params[i] = { name = p.name, help = p.help, required = p.required and true or false,
      secret = p.secret and true or false, default = default,
      choices = p.choices and jsonout.array(p.choices) or nil }
  end
  for i, s in ipairs(plan.steps) do
    local approval = s.approval
    if type(approval) == "table" then approval = jsonout.array(approval) end
    steps[i] = { index = s.index, id = s.id, title = s.title, dangerous = s.dangerous and true or false,
      approval = approval, timeout = s.timeout, verify = s.verify ~= nil, undo = s.undo ~= nil }
  end
  return { name = plan.name, title = h.title, severity = h.severity, description = h.description,
    tags = type(h.tags) == "table" and jsonout.array(h.tags) or nil, file = plan.file,
    markdown = plan.markdown ~= nil, params = params, steps = steps }
end

function M.run(args)
  if args[1] == nil then return cli.fail(2, "show: which runbook? (runbook show NAME|FILE)") end
  local run, plan = cli.load_plan(args[1])
  if not run then return cli.fail(2, "%s", plan) end
  if args.json then
    jsonout.print(json_plan(plan))
    return 0
  end
  local h = plan.header
  ui.print(ui.style("bold", plan.name) .. (h.title and (": " .. h.title) or "") ..
    (h.severity and (" [" .. h.severity .. "]") or ""))
  if h.description then ui.print(h.description) end
  ui.print("file: " .. plan.file)
  if #plan.param_list > 0 then
    ui.print("\nparams:")
    for _, p in ipairs(plan.param_list) do
      local notes = {}
      if p.required then notes[#notes + 1] = "required" end
      if p.secret then notes[#notes + 1] = "secret" end
      if p.default ~= nil then notes[#notes + 1] = "default " .. (p.secret and "***" or tostring(p.default)) end
      if p.choices then notes[#notes + 1] = "one of " .. table.concat(p.choices, "|") end
      ui.print(string.format("  %-12s %s%s", p.name, p.help or "",
        #notes > 0 and (" (" .. table.concat(notes, ", ") .. ")") or ""))
    end
  end
  ui.print("\nsteps:")
  for _, s in ipairs(plan.steps) do
    local notes = { "id " .. s.id }
    if s.dangerous then notes[#notes + 1] = "dangerous" end
    if s.approval then
      notes[#notes + 1] = "approval by " .. (s.approval == "other" and "another person" or table.concat(s.approval, " or "))
    end
    if s.timeout then notes[#notes + 1] = "timeout " .. s.timeout .. " s" end
    if s.verify then notes[#notes + 1] = "verified" end
    if s.undo then notes[#notes + 1] = "has undo" end
    ui.print(string.format("  %2d. [ ] %s  %s", s.index, s.title,
      ui.style("dim", "(" .. table.concat(notes, ", ") .. ")")))
    if plan.markdown then M.markdown_items(plan.markdown, plan.markdown.steps[s.index]) end
  end
  if plan.markdown then M.markdown_reference(plan.markdown) end
  return 0
end

-- What a markdown step holds, as its document says it (runbook.markdown):
-- the commands with their class, the checklist items, the blanks.
local ITEM = {
  check = function(it) return "[ ] " .. it.text end,
  blank = function(it) return it.label .. ": ____" end,
  command = function(it) return string.format("%-11s $ %s", it.class, it.cmd) end,
  sql = function(it) return string.format("%-11s sql %s", it.class, (it.sql:gsub("%s+", " "))) end,
  link = function(it, doc)
    local dir = doc.file:match("^(.*)/[^/]*$")
    local f = io.open(it.target:sub(1, 1) == "/" and it.target or ((dir and dir .. "/" or "") .. it.target), "rb")
    if f then f:close() end
    return "-> " .. it.target .. " (" .. it.text .. "; " .. (f and "offered to run now" or "not there: named only") .. ")"
  end,
  severity = function(it)
    local names = {}
    for _, l in ipairs(it.levels) do names[#names + 1] = l.name end
    return "severity: " .. table.concat(names, " | ")
  end,
}

function M.markdown_items(doc, step)
  for _, it in ipairs(step and step.items or {}) do
    local say = ITEM[it.kind]
    if say then
      ui.print("        " .. ui.style("dim", say(it, doc)))
    elseif it.kind == "choice" then
      for _, o in ipairs(it.options) do
        ui.print("        " .. ui.style("dim", string.format("%-11s $ %s  (%s)", o.class, o.cmd, o.label or o.platform)))
      end
    end
  end
end


-- The sections that are not steps: severity levels, contact tables (shown
-- at the start of the run), message templates and their placeholders.
function M.markdown_reference(doc)
  if #doc.reference == 0 then return end
  ui.print("\nreference (shown, not run):")
  for _, r in ipairs(doc.reference) do
    local what = {}
    for _, it in ipairs(r.items) do
      if it.kind == "table" then
        what[#what + 1] = r.severity and "severity levels" or string.format("table of %d rows", #it.rows - 1)
      elseif it.kind == "template" then
        local names, seen = {}, {}
        for ph in it.body:gmatch("%[([%a][%w _%-]*)%]") do
          if not seen[ph] then names[#names + 1], seen[ph] = ph, true end
        end
        what[#what + 1] = "template " .. (it.role or "(other)") .. (#names > 0 and (" [" .. table.concat(names, "] [") .. "]") or "")
      end
    end
    ui.print(string.format("  %s  %s", r.title, ui.style("dim", "(" .. table.concat(what, "; ") .. ")")))
  end
end

return M
