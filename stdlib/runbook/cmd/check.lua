-- runbook check: the static checks of runbooks, one problem a line with
-- file:line.  check_file gathers every problem of one runbook.
local cli = require("runbook.cli")
local jsonout = require("runbook.jsonout")
local ui = require("runbook.ui")

local M = {
  summary = "check a runbook for mistakes",
  synopsis = "NAME|FILE...",
  description = "Check runbooks: load errors (file:line), duplicate step ids, undeclared params.\n" ..
    "Exit 2 when a problem is found.",
  options = {
    { name = "json", help = "print the results as one JSON object, for scripts (docs/json.md)" },
  },
}

-- Lines of a file, for the static checks.
local function file_lines(path)
  local lines = {}
  local f = io.open(path, "r")
  if not f then return lines end
  for l in f:lines() do lines[#lines + 1] = l end
  f:close()
  return lines
end

-- Uses of undeclared params: p.name or p["name"] in a step's functions,
-- where p is the function's first parameter.
local function undeclared_uses(plan, fn, lines, problems)
  local pname = debug.getlocal(fn, 1)
  if pname == nil then return end
  local info = debug.getinfo(fn, "S")
  for ln = info.linedefined, info.lastlinedefined do
    local text = (lines[ln] or ""):gsub("%-%-.*$", "")
    for key in text:gmatch("%f[%w_]" .. pname .. "%s*%.%s*([%a_][%w_]*)") do
      if plan.params[key] == nil then
        problems[#problems + 1] = string.format("%s:%d: undeclared param %q (declare it with param(%q, {...}))",
          plan.file, ln, key, key)
      end
    end
    for key in text:gmatch("%f[%w_]" .. pname .. "%s*%[%s*[\"']([^\"']+)[\"']%s*%]") do
      if plan.params[key] == nil then
        problems[#problems + 1] = string.format("%s:%d: undeclared param %q", plan.file, ln, key)
      end
    end
  end
end

function M.check_file(name)
  local run, plan = cli.load_plan(name)
  if not run then return { plan } end
  local problems = {}
  local lines = file_lines(plan.file)
  if not plan.file:match("%.md$") then    -- a markdown runbook's Lua is made by runbook.mdimport
    require("runbook.lint").check_file(plan.file, problems)   -- what a runbook is not offered
  end
  if #plan.steps == 0 then problems[#problems + 1] = plan.file .. ": no steps declared" end
  if next(plan.header) == nil then
    problems[#problems + 1] = plan.file .. ": no runbook{name=, title=, severity=} header"
  end
  for _, s in ipairs(plan.steps) do
    for _, fn in ipairs({ s.fn, s.verify or false, s.undo or false }) do
      if fn then undeclared_uses(plan, fn, lines, problems) end
    end
  end
  for _, p in ipairs(plan.param_list) do
    if p.required and p.default ~= nil then
      problems[#problems + 1] = string.format("%s:%d: param %q is required and has a default",
        plan.file, p.line, p.name)
    end
  end
  return problems, plan
end

-- One problem as `check --json` gives it: the text as printed, and its
-- file and line when it names them.
local function json_problem(text)
  local where = text:gsub("^load error: ", "")
  local file, line, message = where:match("^(.-):(%d+): (.*)$")
  if not file then file, message = where:match("^([^%s:]+): (.*)$") end
  return { text = text, file = file, line = tonumber(line), message = message or text }
end

local function json_result(name, problems, plan)
  local list = jsonout.array()
  for i, p in ipairs(problems) do list[i] = json_problem(p) end
  return { name = name, ok = #problems == 0, file = plan and plan.file,
    steps = plan and #plan.steps, params = plan and #plan.param_list, problems = list }
end

function M.run(args)
  if args[1] == nil then return cli.fail(2, "check: which runbook? (runbook check NAME|FILE...)") end
  local bad, results = 0, jsonout.array()
  for i = 1, #args do
    local problems, plan = M.check_file(args[i])
    results[i] = json_result(args[i], problems, plan)
    if #problems > 0 then bad = bad + 1 end
    if not args.json then
      for _, p in ipairs(problems) do ui.eprint(p) end
      if #problems == 0 then
        ui.print(string.format("ok: %s (%d steps, %d params)", plan.file, #plan.steps, #plan.param_list))
      end
    end
  end
  if args.json then jsonout.print({ ok = bad == 0, runbooks = results }) end
  return bad > 0 and 2 or 0
end

return M
