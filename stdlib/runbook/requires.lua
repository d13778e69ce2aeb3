-- runbook.requires: what a step needs, provided by the engine.
--
--   requirement("team_lock", function(p) return lock("db-restore:" .. p.db_name) end)
--   step("Stop the service", { requires = { "team_lock" } }, function(p) ... end)
--
-- requirement(name, fn) declares, at the top level, how to provide
-- something steps need; a step's `requires` names what it needs.  Before
-- each attempt of such a step, inside its task (so what fn calls is
-- recorded under the step, honours the dry run and the step's timeout,
-- and Ctrl-C stops it), the engine calls each fn(p) in the order named;
-- an error fails the step as its own would.  Written once, provided
-- before every step that names it: a requirement must be cheap to
-- provide again (lock() is a no-op while the run holds the lock).  The
-- names are checked when the runbook loads: a step that requires an
-- undeclared name is a load error at the step's line.
local context = require("runbook.context")
local errors = require("runbook.errors")

local M = {}

-- requirement(name, fn), a verb of the declaration phase.
function M.requirement(name, fn)
  local run = context.need("requirement")
  if run.phase ~= "declare" then errors.usage("requirement: only at the top level of a runbook", "requirement") end
  if type(name) ~= "string" or not name:match("^[%a_][%w_.%-]*$") then
    errors.usage("requirement: the name must be letters, digits, '_', '-' or '.'", "requirement")
  end
  if type(fn) ~= "function" then
    errors.usage(string.format("requirement %q: missing its function", name), "requirement")
  end
  local reqs = run.plan.requirements or {}
  run.plan.requirements = reqs
  if reqs[name] then
    errors.usage(string.format("requirement %q is declared twice (line %d has it already)", name,
      reqs[name].line), "requirement")
  end
  reqs[name] = { name = name, fn = fn, line = debug.getinfo(2, "l").currentline }
end

local function declared(plan)
  local names = {}
  for name in pairs(plan.requirements or {}) do names[#names + 1] = name end
  table.sort(names)
  return #names > 0 and table.concat(names, ", ") or "none"
end

-- After the declaration: "file:line: ..." for the first step whose
-- requires is not a list of declared names, or nil.
function M.check(plan, path)
  for _, s in ipairs(plan.steps) do
    local req = s.requires
    if req ~= nil and type(req) ~= "table" then
      return string.format("%s:%d: step %q: requires must be a list of requirement names", path, s.line, s.title)
    end
    for _, name in ipairs(req or {}) do
      if (plan.requirements or {})[name] == nil then
        return string.format("%s:%d: step %q requires %q, which no requirement(%q, fn) declares " ..
          "(declared: %s)", path, s.line, s.title, tostring(name), tostring(name), declared(plan))
      end
    end
  end
end

-- In the step's task, before its function.
function M.provide(run, step, p)
  for _, name in ipairs(step.requires or {}) do
    run.plan.requirements[name].fn(p)
  end
end

return M
