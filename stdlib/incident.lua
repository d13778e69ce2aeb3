-- incident: severities, a proposal from what the checks found, the
-- operator's confirmation, and the announcements people expect.
--
--   local incident = require("incident")
--
-- incident.LEVELS = { "P0", "P1", "P2", "P3" }, most severe first, and
-- incident.SEVERITIES[level] = { level, meaning, examples }:
--   P0  outage, data loss or security breach
--   P1  a major feature down, or responses over 5 s
--   P2  a minor feature down, or intermittent errors
--   P3  cosmetic
--     log.info("P1 means: %s", incident.meaning("P1"))
--
-- incident.KINDS maps a finding's kind to its level: outage, data_loss,
-- security -> P0; feature_down, slow -> P1; errors, intermittent,
-- degraded -> P2; cosmetic -> P3.
--
-- A finding is { kind = "slow", what = "GET /health took 6.2 s", source = "health" }
-- (or { severity = "P1", what = ... } to set the level directly).
-- stdlib/health.lua produces them; a runbook adds its own.
--
-- incident.propose(findings) -> level, reasons
--   The most severe level any finding calls for, and the `what` of the
--   findings at that level.  No findings: P3, "the checks found nothing wrong".
--     local sev, why = incident.propose({ { kind = "slow", what = "GET /health took 6.2 s" } })
--     --> "P1", { "GET /health took 6.2 s" }
--
-- incident.findings(key) -> f
--   The run's findings, collected by every step that looks: kept in
--   state[key] (default "findings"), so they are recorded at each step end
--   and a --resume'd run has the findings of the steps it skips.
--     local findings = incident.findings()
--     findings:add("health", "slow", "GET /health took 6.2 s")   -- source, kind, what
--   f:add(source, kind, what) adds { kind, what, source } and logs
--     "finding (slow, P1): GET /health took 6.2 s"
--   f:add_all(list, source) adds findings made elsewhere (health.findings,
--     health.detailed's d.findings), each with its own kind or severity
--   f:clear(source) drops a source's findings: a check that runs again
--     (a retried step) does not count twice
--   f:list() -> the findings, in order; f:whats() -> their `what`s
--   f:propose() -> incident.propose(f:list())
--
-- incident.rank(level) -> 0 (P0) .. 3 (P3); raises on anything else.
-- incident.worse(a, b) -> the more severe of two levels.
-- incident.escalate(level, { at_least = "P1" }) -> one level more severe
--   (P0 stays P0), and at least `at_least` when given.
--     incident.escalate("P2") --> "P1";  incident.escalate("P3", { at_least = "P1" }) --> "P1"
--
-- incident.confirm(proposed, reasons, opts) -> level
--   Shows the definitions and the reasons, then asks the constant question
--   "Severity for this incident?" with choose(), the proposal as default
--   (so --yes accepts it).  The operator confirms it or picks another; an
--   answers file line reads `[severity] Severity for this incident? = P1`.
--   opts.question replaces the question.  The proposal and the operator's
--   choice are recorded as `severity` events (proposed, then confirmed or
--   changed, by user@host), which post-incident reads.
--
-- incident.declare(level, why, opts) -> level
--   A runbook's own declaration ("declared"), or with opts.previous a
--   failure that made the incident more severe ("raised"): logged and
--   recorded as a `severity` event.
--     incident.declare("P1", "api.example.com expires within 3 days")
--     incident.declare(incident.escalate("P2"), "restart failed", { previous = "P2" })
--
-- incident.message(kind, fields) -> text
--   Fills the template incident.templates[kind] ("declared",
--   "restart_failed", "resolved"): ${name} is fields[name]; severity adds
--   ${meaning}; operator and target default to the person running and the
--   target's name.  A template may be replaced: incident.templates.resolved = "...".
--     incident.message("declared", { severity = "P1", service = "api", scope = "checkout 500s" })
--
-- incident.announce(kind, fields, opts) -> text, results
--   incident.message, then notify(text, { severity = fields.severity,
--   channel = opts.channel, required = opts.required ~= false }): an
--   announcement that reached nobody fails the step, so the operator
--   knows it did not go out and can retry.
--     incident.announce("restart_failed", { severity = "P1", previous = "P2",
--       service = "api", attempts = 2, error = "exited with code 1" })
local errors = require("runbook.errors")
local verbs = require("runbook.verbs")
local choose, log, print, target = verbs.choose, verbs.log, verbs.print, verbs.target
local notify = require("notify")
local severity = require("severity")

local incident = {}

incident.LEVELS = { "P0", "P1", "P2", "P3" }

incident.SEVERITIES = {
  P0 = { level = "P0", meaning = "outage, data loss or security breach",
    examples = "the site is down for everyone; data was lost or exposed" },
  P1 = { level = "P1", meaning = "a major feature down, or responses over 5 s",
    examples = "checkout or login fails; pages take longer than 5 s" },
  P2 = { level = "P2", meaning = "a minor feature down, or intermittent errors",
    examples = "one report fails; a few percent of requests error" },
  P3 = { level = "P3", meaning = "cosmetic",
    examples = "a wrong label, a misaligned chart" },
}

incident.KINDS = {
  outage = "P0", data_loss = "P0", security = "P0",
  feature_down = "P1", slow = "P1",
  errors = "P2", intermittent = "P2", degraded = "P2",
  cosmetic = "P3",
}

local RANK = { P0 = 0, P1 = 1, P2 = 2, P3 = 3 }

function incident.rank(level)
  local r = RANK[level]
  if r == nil then
    errors.raise("usage", string.format("incident: %q is not a severity (P0, P1, P2 or P3)", tostring(level)), { primitive = "incident" })
  end
  return r
end

function incident.meaning(level)
  incident.rank(level)
  return incident.SEVERITIES[level].meaning
end

function incident.worse(a, b)
  return incident.rank(a) <= incident.rank(b) and a or b
end

function incident.escalate(level, opts)
  local up = incident.LEVELS[math.max(incident.rank(level) - 1, 0) + 1]
  if opts and opts.at_least then up = incident.worse(up, opts.at_least) end
  return up
end

-- The level one finding calls for.
local function level_of(f)
  if f.severity ~= nil then
    incident.rank(f.severity)
    return f.severity
  end
  local level = incident.KINDS[f.kind]
  if level == nil then
    local kinds = {}
    for k in pairs(incident.KINDS) do kinds[#kinds + 1] = k end
    table.sort(kinds)
    errors.raise("usage", string.format("incident.propose: finding %q has kind %q; kinds are %s, or give severity=",
      tostring(f.what), tostring(f.kind), table.concat(kinds, ", ")), { primitive = "incident" })
  end
  return level
end

function incident.propose(findings)
  if type(findings) ~= "table" then errors.raise("usage", "incident.propose: expected a list of findings", { primitive = "incident" }) end
  local best, reasons = nil, {}
  for _, f in ipairs(findings) do
    local level = level_of(f)
    if best == nil or incident.rank(level) < incident.rank(best) then
      best, reasons = level, {}
    end
    if level == best then reasons[#reasons + 1] = f.what or f.kind end
  end
  if best == nil then return "P3", { "the checks found nothing wrong" } end
  return best, reasons
end

-- The collector of incident.findings: its list lives in the run's state,
-- looked up at each call (--resume restores state after the runbook's top
-- level ran, so a list taken then would be the old one).
local Findings = {}
Findings.__index = Findings

function incident.findings(key)
  return setmetatable({ key = key or "findings" }, Findings)
end

-- The run's state table is read at each call: --resume puts the state
-- of the run it resumes in its place.
function Findings:list()
  local state = verbs.state
  local list = state[self.key]
  if list == nil then
    list = {}
    state[self.key] = list
  end
  return list
end

function Findings:add(source, kind, what)
  return self:add_all({ { kind = kind, what = what } }, source)
end

function Findings:add_all(found, source)
  local list = self:list()
  for _, f in ipairs(found) do
    local one = { kind = f.kind, severity = f.severity, what = f.what, source = source or f.source }
    level_of(one)                       -- an unknown kind fails here, not in the proposal
    list[#list + 1] = one
    log.warn("finding (%s, %s): %s", one.kind or "-", level_of(one), tostring(one.what))
  end
end

function Findings:clear(source)
  local list = self:list()
  for i = #list, 1, -1 do
    if list[i].source == source then table.remove(list, i) end
  end
end

function Findings:whats()
  local out = {}
  for i, f in ipairs(self:list()) do out[i] = f.what or f.kind end
  return out
end

function Findings:propose()
  return incident.propose(self:list())
end

function incident.confirm(proposed, reasons, opts)
  incident.rank(proposed)
  opts = opts or {}
  print("Severity definitions:")
  for _, level in ipairs(incident.LEVELS) do
    print(string.format("  %s  %s", level, incident.SEVERITIES[level].meaning))
  end
  print(string.format("Proposed: %s (%s), because:", proposed, incident.meaning(proposed)))
  for _, r in ipairs(reasons or {}) do print("  - " .. r) end
  print(string.format("(Enter keeps %s; pick another level to change it)", proposed))
  severity { action = "proposed", level = proposed, reasons = reasons }
  local chosen = choose(opts.question or "Severity for this incident?", incident.LEVELS,
    { default = proposed })
  if chosen == proposed then
    log.info("severity %s confirmed", chosen)
    severity { action = "confirmed", level = chosen }
  else
    log.warn("severity changed by the operator: proposed %s, declared %s", proposed, chosen)
    severity { action = "changed", level = chosen, previous = proposed }
  end
  return chosen
end

function incident.declare(level, why, opts)
  incident.rank(level)
  opts = opts or {}
  if opts.previous then
    log.warn("severity raised from %s to %s: %s", opts.previous, level, why)
  else
    log.warn("severity declared: %s (%s)", level, why)
  end
  return severity { action = opts.previous and "raised" or "declared", level = level,
    previous = opts.previous, reasons = why }
end

-- (no "[P1]" prefix: notify puts one before a webhook's text and hands a
-- command the level in RUNBOOK_NOTIFY_SEVERITY)
incident.templates = {
  declared = "Incident on ${target}: severity ${severity} (${meaning}) declared by ${operator}. " ..
    "Service: ${service}. Started: ${started}. Scope: ${scope}. Findings: ${reasons}.",
  restart_failed = "Restart of ${service} on ${target} failed after ${attempts} attempt(s): " ..
    "${error}. Severity raised from ${previous} to ${severity} (${meaning}).",
  resolved = "Resolved: ${service} on ${target}: ${summary}. Severity was ${severity}; " ..
    "resolved by ${operator}.",
}

local function operator_name()
  local ok, name = pcall(function() return require("runbook.operator").username() end)
  return ok and name or (os.getenv("USER") or "unknown")
end

local field_text = require("runbook.templates").text_of

function incident.message(kind, fields)
  local template = incident.templates[kind]
  if template == nil then
    local kinds = {}
    for k in pairs(incident.templates) do kinds[#kinds + 1] = k end
    table.sort(kinds)
    errors.raise("usage", string.format("incident.message: no template %q (templates: %s)", tostring(kind),
      table.concat(kinds, ", ")), { primitive = "incident" })
  end
  local f = {}
  for k, v in pairs(fields or {}) do f[k] = v end
  f.operator = f.operator or operator_name()
  f.target = f.target or (target and target.name) or "(no target)"
  if f.severity and RANK[f.severity] then f.meaning = f.meaning or incident.meaning(f.severity) end
  return (template:gsub("%${([%w_]+)}", function(name)
    local v = f[name]
    if v == nil or v == "" then return "(not given)" end
    return field_text(v)
  end))
end

function incident.announce(kind, fields, opts)
  opts = opts or {}
  local text = incident.message(kind, fields)
  local ok, results = pcall(notify, text, { severity = fields and fields.severity, channel = opts.channel,
    required = opts.required ~= false })
  -- (an error object names the runbook's line, not this file's)
  if not ok then error(results, 0) end
  return text, results
end

return incident
