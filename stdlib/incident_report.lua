-- incident_report: the incident ticket, built from runbook transcripts.
--
-- Built on runbook.report (the transcript timeline the lead's
-- `runbook report` renders); this module adds the ticket around it.
--
--   local ir = require("incident_report")
--
-- ir.paths(text) -> list
--   Transcript paths from a param: separated by spaces and/or commas.
--     ir.paths("a.jsonl, b.jsonl c.jsonl")  --> { "a.jsonl", "b.jsonl", "c.jsonl" }
--
-- ir.load(paths) -> runs
--   Reads and verifies each transcript (runbook.report.load), oldest run
--   first; raises naming the file that cannot be read.
--
-- ir.facts(runs, opts) -> facts
--   The ticket's header: { id = "INC-2026-11-23-001", date, severity,
--   severity_source, start, finish, duration (s), duration_text, services
--   (list), title, runbooks (list of "name (status)"), unverified (count) }.
--   opts: ticket ("7" or "007": the NNN; default 001), services (list: the
--   affected services; default: any param named service/services in the
--   runs), severity (overrides), title.
--   Severity: the most severe level confirmed, changed, declared or raised
--   in the runs' `severity` events (a proposal nobody confirmed only when
--   there is nothing else), else the most severe runbook header;
--   facts.severity_history lists every severity event, oldest first.
--     local f = ir.facts(runs, { ticket = "3", services = { "api" } })
--     log.info("%s %s %s", f.id, f.severity, f.duration_text)
--
-- ir.markdown(facts, runs, answers) -> text
--   The ticket in Markdown: the header table, root cause, contributing
--   factors, lessons (answers.root_cause/.factors/.lessons, as typed), then
--   the timeline, actions taken, who confirmed what and the runs, from
--   runbook.report.
--     local md = ir.markdown(f, runs, { root_cause = "...", factors = "...", lessons = "..." })
local errors = require("runbook.errors")
local report = require("runbook.report")

local ir = {}

local RANK = { P0 = 0, P1 = 1, P2 = 2, P3 = 3 }

function ir.paths(text)
  local list = {}
  for p in tostring(text or ""):gmatch("[^%s,]+") do list[#list + 1] = p end
  return list
end

function ir.load(paths)
  if #paths == 0 then errors.raise("usage", "incident_report: no transcripts given", { primitive = "incident_report" }) end
  local runs, err = report.load(paths)
  if not runs then errors.raise("failed", "incident_report: " .. err, { primitive = "incident_report" }) end
  for i, r in ipairs(runs) do
    if r.start == nil then
      errors.raise("usage", string.format("incident_report: %s has no run.start event: is it a runbook transcript?",
        paths[i]), { primitive = "incident_report" })
    end
  end
  table.sort(runs, function(a, b) return a.start < b.start end)
  return runs
end

-- "2026-11-23T19:03:03.123Z" -> "2026-11-23 19:03:03 UTC"
local function when(ts)
  if ts == nil then return "?" end
  local d, t = tostring(ts):match("^(%d+%-%d+%-%d+)T(%d+:%d+:%d+)")
  return d and (d .. " " .. t .. " UTC") or tostring(ts)
end
ir.when = when

-- The incident's severity from the runs' `severity` events (recorded by
-- stdlib/incident.lua): the most severe level that was confirmed, changed
-- by an operator, declared or raised, in any run (an incident is reported
-- at the worst it reached); a proposal nobody confirmed only when nothing
-- else was recorded.  Returns that event (with runbook) and the history,
-- oldest first.
local DECIDED = { confirmed = true, changed = true, declared = true, raised = true }

local function severity_events(runs)
  local history = {}
  for _, r in ipairs(runs) do
    for _, ev in ipairs(r.events) do
      if ev.event == "severity" and RANK[ev.level] then
        history[#history + 1] = { level = ev.level, action = ev.action, by = ev.by, ts = ev.ts,
          previous = ev.previous, runbook = r.runbook }
      end
    end
  end
  table.sort(history, function(a, b) return tostring(a.ts) < tostring(b.ts) end)
  local best, proposed
  for _, h in ipairs(history) do
    if DECIDED[h.action] then
      if best == nil or RANK[h.level] < RANK[best.level] then best = h end
    elseif proposed == nil or RANK[h.level] < RANK[proposed.level] then
      proposed = h
    end
  end
  return best or proposed, history
end

local function highest(runs)
  local best
  for _, r in ipairs(runs) do
    if RANK[r.severity] and (best == nil or RANK[r.severity] < RANK[best]) then best = r.severity end
  end
  return best
end

local function services_from_params(runs)
  local list, seen = {}, {}
  for _, r in ipairs(runs) do
    for _, p in ipairs(r.params) do
      if (p.name == "service" or p.name == "services") and type(p.value) == "string" then
        for s in p.value:gmatch("[^%s,]+") do
          if not seen[s] then seen[s], list[#list + 1] = true, s end
        end
      end
    end
  end
  return list
end

function ir.facts(runs, opts)
  opts = opts or {}
  local first = runs[1]
  local nnn = tostring(opts.ticket or "1")
  if not nnn:match("^%d+$") or #nnn > 3 then
    errors.raise("usage", string.format("incident_report: ticket number %q must be 1 to 3 digits (NNN)", nnn), { primitive = "incident_report" })
  end
  local f = { date = first.start:sub(1, 10), start = first.start, unverified = 0, runbooks = {} }
  f.id = string.format("INC-%s-%03d", f.date, tonumber(nnn))
  for _, r in ipairs(runs) do
    local finish = r.finish or r.last
    if f.finish == nil or tostring(finish) > tostring(f.finish) then f.finish = finish end
    if not tostring(r.verified):match("^verified") then f.unverified = f.unverified + 1 end
    f.runbooks[#f.runbooks + 1] = string.format("%s (%s%s)", r.runbook or "?", r.status or "unfinished",
      r.dry_run and ", dry run" or "")
  end
  f.duration = report.epoch(f.finish) - report.epoch(f.start)
  f.duration_text = report.duration(f.duration)
  local d, history = severity_events(runs)
  f.severity_history = history
  if opts.severity then
    f.severity, f.severity_source = opts.severity, "set by the author of this report"
  elseif d then
    f.severity = d.level
    f.severity_source = string.format("%s by %s at %s in %s", d.action, d.by or "?", when(d.ts),
      d.runbook or "?")
  else
    f.severity = highest(runs) or "P3"
    f.severity_source = "no severity was recorded; the most severe runbook run"
  end
  f.services = (opts.services and #opts.services > 0) and opts.services or services_from_params(runs)
  f.title = opts.title or first.title or first.runbook or "incident"
  return f
end

local function cell(s)
  return (tostring(s or ""):gsub("|", "\\|"):gsub("\n", " "))
end

-- runbook.report's Markdown as { heading = block } and the headings in order.
local function sections(runs)
  local text = report.markdown(runs)
  local order, blocks = {}, {}
  local current
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    local h = line:match("^## (.*)$")
    if h then
      current = h
      order[#order + 1] = h
      blocks[h] = {}
    elseif current and not line:match("^# ") then
      local b = blocks[current]
      b[#b + 1] = line
    end
  end
  return order, blocks
end

-- An answer as Markdown: "\n" typed in one line (an answers file) is a
-- line break; several lines become a list, so they stay apart when rendered.
local function answer(text)
  text = tostring(text or ""):gsub("\\n", "\n")
  if text:match("^%s*$") then return "_(not given)_" end
  local lines = {}
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    if not line:match("^%s*$") then lines[#lines + 1] = line:match("^%s*(.-)%s*$") end
  end
  if #lines == 1 then return lines[1] end
  for i, line in ipairs(lines) do
    if not line:match("^[-*+] ") and not line:match("^%d+[.)] ") then lines[i] = "- " .. line end
  end
  return table.concat(lines, "\n")
end

-- Every severity event, oldest first: who proposed, confirmed, declared
-- or raised which level, in which run.
local function severity_section(w, f)
  if #(f.severity_history or {}) == 0 then return end
  w("## Severity")
  w("")
  w("| Time (UTC) | Level | What | By | Runbook |")
  w("|---|---|---|---|---|")
  for _, h in ipairs(f.severity_history) do
    w("| %s | %s | %s | %s | %s |", when(h.ts), h.level,
      h.previous and (h.action .. " from " .. h.previous) or h.action, cell(h.by), cell(h.runbook))
  end
  w("")
end

function ir.markdown(f, runs, answers)
  answers = answers or {}
  local out = {}
  local function w(fmt, ...) out[#out + 1] = select("#", ...) > 0 and string.format(fmt, ...) or fmt end
  w("# %s: %s", f.id, cell(f.title))
  w("")
  w("| Field | Value |")
  w("|---|---|")
  w("| ID | %s |", f.id)
  w("| Severity | **%s** (%s) |", f.severity, cell(f.severity_source))
  w("| Start | %s |", when(f.start))
  w("| End | %s |", when(f.finish))
  w("| Duration | %s |", f.duration_text)
  w("| Affected services | %s |", #f.services > 0 and cell(table.concat(f.services, ", ")) or "_(not recorded)_")
  w("| Runbooks run | %s |", cell(table.concat(f.runbooks, ", ")))
  w("| Transcripts | %d, %s |", #runs, f.unverified == 0 and "all verified"
    or string.format("**%d do not verify**", f.unverified))
  w("")
  severity_section(w, f)
  w("## Root cause")
  w("")
  w("%s", answer(answers.root_cause))
  w("")
  w("## Contributing factors")
  w("")
  w("%s", answer(answers.factors))
  w("")
  w("## Lessons learned")
  w("")
  w("%s", answer(answers.lessons))
  w("")
  local order, blocks = sections(runs)
  local wanted = { "Timeline (UTC)", "Actions taken", "Who confirmed what" }
  local done, runs_heading = {}, false
  local function emit(h)
    if blocks[h] and not done[h] then
      done[h] = true
      if h:match("^Run ") then       -- one "## Run <id>" per run: grouped under "## Runs"
        if not runs_heading then w("## Runs"); w(""); runs_heading = true end
        w("### %s", h)
      else
        w("## %s", h == "Timeline (UTC)" and "Timeline (UTC, from the transcripts)" or h)
      end
      for _, line in ipairs(blocks[h]) do w("%s", line) end
    end
  end
  for _, h in ipairs(wanted) do emit(h) end
  for _, h in ipairs(order) do emit(h) end      -- the runs, and anything report.lua adds later
  return (table.concat(out, "\n"):gsub("\n\n\n+", "\n\n")) .. "\n"
end

return ir
