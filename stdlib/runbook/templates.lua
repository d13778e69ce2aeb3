-- runbook.templates: the messages an incident sends (the initial alert, the
-- status updates on the severity's cadence, the resolution), and the one
-- function that fills a template's [Placeholder] fields.
--
-- A team replaces a message in its config file or in a runbook's header;
-- the runbook's wins, then the config's, then the defaults below (kinds:
-- alert, update, resolved, escalation):
--   templates = { update = "[Service Name]: [Status]. Next: [Next Step]." }
--   runbook { name = "db-restore", templates = { resolved = "..." } }
--
-- A placeholder is a name in square brackets: a letter, then letters,
-- digits, blanks, '-', '_' or '/', two characters at least, and not
-- followed by '(' (so a markdown link "[docs](url)" and a checkbox "[x]"
-- are not placeholders).  Pure Lua: tests/unit/cadence.lua runs it.
local templates = {}

-- (no "[P1]" in front: notify puts the level before a webhook's text and
-- hands a command RUNBOOK_NOTIFY_SEVERITY)
templates.DEFAULTS = {
  alert = "Incident declared: [Service Name], severity [Severity]. [Summary]. Lead: [Lead]. " ..
    "Runbook [Runbook] on [Target], started [Started]. Next update within [Cadence].",
  update = "Status update on [Service Name] ([Severity], [Duration] in): [Status]. " ..
    "Since the last update: [Since Last Update]. Next: [Next Step]. Lead: [Lead]. " ..
    "Next update within [Cadence].",
  resolved = "Resolved: [Service Name] ([Severity]) after [Duration]: [Status]. Lead: [Lead]. " ..
    "Runbook [Runbook] on [Target].",
  escalation = "Escalation: [Service Name] ([Severity]) has waited [Waited] for [Waiting On], " ..
    "past the [Respond] response time: [Question] (step [Step], runbook [Runbook] on [Target]). " ..
    "Lead: [Lead].",
}

local function norm(name)
  return name:lower():gsub("[%s_%-]+", " ")
end

-- A value as a message says it: a list joined with "; " (incident.lua's
-- ${field} messages say theirs so too).
function templates.text_of(v)
  if type(v) == "table" then
    local parts = {}
    for i, x in ipairs(v) do parts[i] = tostring(x) end
    return table.concat(parts, "; ")
  end
  return tostring(v)
end
local text_of = templates.text_of

-- fill(text, values) -> the text with every [Name] whose name is a key of
-- values (exactly, or ignoring case, blanks, '_' and '-') replaced by its
-- value (a list is joined with "; "), and the list of the names it had no
-- value for, in order, once each.  Those stay in the text as they were, so
-- a message never loses a field silently.
function templates.fill(text, values)
  local loose = {}
  for k, v in pairs(values) do
    if type(k) == "string" then loose[norm(k)] = v end
  end
  local missing, seen = {}, {}
  local out = text:gsub("()%[(%a[%w%s_/%-]+)%]()", function(_, name, after)
    if text:sub(after, after) == "(" then return nil end
    local v = values[name]
    if v == nil then v = loose[norm(name)] end
    if v == nil or v == false then
      if not seen[name] then
        seen[name] = true
        missing[#missing + 1] = name
      end
      return nil
    end
    return text_of(v)
  end)
  return out, missing
end

-- Why a table of replacements (a config's or a runbook header's
-- `templates`) cannot be used, naming it as where, or nil when it can.
-- Checked when the config or the runbook is read, so a run never finds
-- out in the middle of an incident.
function templates.check(t, where)
  if t == nil then return nil end
  if type(t) ~= "table" then
    return where .. ": expected a table { alert = ..., update = ..., resolved = ..., escalation = ... }"
  end
  for kind, v in pairs(t) do
    if templates.DEFAULTS[kind] == nil then
      return string.format("%s.%s: no such message (alert, update, resolved, escalation)", where, tostring(kind))
    end
    if type(v) ~= "string" or not v:match("%S") then
      return string.format("%s.%s: expected the message text (a string)", where, kind)
    end
  end
  return nil
end

-- The template of kind ("alert", "update", "resolved", "escalation") for a
-- run: the runbook header's, the config's, or the default (both checked
-- when they were read).
function templates.get(run, kind)
  local mine = run.plan and run.plan.header and run.plan.header.templates
  local team = run.config and run.config.templates
  return mine and mine[kind] or team and team[kind] or templates.DEFAULTS[kind]
end

return templates
