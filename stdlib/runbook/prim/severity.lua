-- severity{level=, action=, previous=, reasons=, source=}: the incident's
-- severity as a structured transcript event, so a report reads what was
-- proposed, confirmed, declared or raised, and by whom, from the record
-- instead of from the wording of a log line.
--
--   action   "proposed"  the runbook's checks call for this level
--            "confirmed" the operator accepted the proposal
--            "changed"   the operator picked another level than proposed
--            "declared"  a runbook declared it on its own (an expired certificate)
--            "raised"    a failure made it more severe (a restart that failed)
--   by       the operator (user@host) for confirmed/changed; the runbook
--            for the others
--
-- Records a `severity` event and returns the level.  stdlib/incident.lua's
-- propose/confirm/declare/escalate call it; a runbook may too.
local context = require("runbook.context")
local errors = require("runbook.errors")
local operator = require("runbook.operator")

local LEVELS = { P0 = true, P1 = true, P2 = true, P3 = true }
local ACTIONS = { proposed = "runbook", confirmed = "operator", changed = "operator",
  declared = "runbook", raised = "runbook" }

local function who(run, action)
  if ACTIONS[action] == "operator" then
    return operator.username() .. "@" .. operator.hostname()
  end
  return "runbook " .. (run.plan and run.plan.header and run.plan.header.name or "?")
end

local function usage(fmt, ...)
  errors.usage(string.format(fmt, ...), "severity")
end

local function check(s)
  if type(s) ~= "table" then usage("severity: expected a table {level=, action=}") end
  if not LEVELS[s.level] then usage("severity: level %q is not one of P0, P1, P2, P3", tostring(s.level)) end
  if not ACTIONS[s.action] then
    usage("severity: action %q is not one of proposed, confirmed, changed, declared, raised", tostring(s.action))
  end
  if s.previous ~= nil and not LEVELS[s.previous] then
    usage("severity: previous %q is not one of P0, P1, P2, P3", tostring(s.previous))
  end
end

return function(s)
  check(s)
  local run = context.need("severity")
  if run.phase ~= "execute" then usage("severity: only inside a step") end
  local reasons = s.reasons
  if type(reasons) == "string" then reasons = { reasons } end
  if run.rec then
    run.rec:event("severity", { action = s.action, level = s.level, previous = s.previous,
      reasons = reasons, by = who(run, s.action), source = s.source,
      step = run.step and run.step.id })
  end
  require("runbook.cadence").declared(run, s.level, s.action)
  return s.level
end
