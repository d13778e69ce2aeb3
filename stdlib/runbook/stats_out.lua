-- runbook.stats_out: what `runbook stats` prints, as a table or as JSON
-- (the shape is documented in docs/json.md; the figures in docs/stats.md).
local jsonout = require("runbook.jsonout")
local ui = require("runbook.ui")

local out = {}

-- Seconds rounded to the millisecond, as the JSON gives them.
local function secs(s)
  if s == nil then return nil end
  return math.floor(s * 1000 + 0.5) / 1000
end

-- Seconds as the table shows them: two decimals under 10 s, one under
-- 2 min, then minutes and hours.  Rounded to the millisecond first, so
-- the table and the JSON never disagree on a figure at a half (5 ms).
function out.duration(s)
  if s == nil then return "-" end
  s = secs(s)
  if s < 10 then return string.format("%.2f s", s) end
  if s < 120 then return string.format("%.1f s", s) end
  s = math.floor(s + 0.5)
  if s < 7200 then return string.format("%d min %02d s", s // 60, s % 60) end
  return string.format("%d h %02d min", s // 3600, (s % 3600) // 60)
end

function out.percent(r)
  if r == nil then return "-" end
  return string.format("%.0f%%", r * 100)
end

-- A UTC time with milliseconds, as the transcript writes its ts.
function out.utc(t)
  if t == nil then return nil end
  local ms = math.floor((t - math.floor(t)) * 1000 + 0.5)
  local whole = math.floor(t)
  if ms == 1000 then whole, ms = whole + 1, 0 end
  return os.date("!%Y-%m-%dT%H:%M:%S", whole) .. string.format(".%03dZ", ms)
end

local function json_incident(inc)
  local runs = jsonout.array()
  for i, r in ipairs(inc.runs) do
    runs[i] = { run = r.id, runbook = r.runbook, file = r.path, status = r.status or "unfinished",
      start = r.start_ts, review = r.review }
  end
  return { start = out.utc(inc.start), start_source = inc.start_source, target = inc.target,
    severity = inc.severity, runs = runs, detected = out.utc(inc.detected),
    mitigated = out.utc(inc.mitigated), resolved = out.utc(inc.resolved),
    time_to_detect = secs(inc.ttd), time_to_mitigate = secs(inc.ttm), time_to_resolve = secs(inc.ttr),
    status = inc.resolved and "resolved" or "open" }
end

local function json_runbook(rb)
  local steps, no = jsonout.array(), jsonout.array()
  for i, st in ipairs(rb.step_order) do
    steps[i] = { id = st.id, index = st.index, title = st.title, runs = st.runs, attempts = st.attempts,
      failed = st.failed, skipped = st.skipped, failure_rate = st.failure_rate, skip_rate = st.skip_rate,
      median_duration = secs(st.median), p90_duration = secs(st.p90) }
  end
  for i, q in ipairs(rb.answered_no) do
    no[i] = { question = q.question, step = q.step, asked = q.asked, no = q.no }
  end
  return { runbook = rb.runbook, runs = rb.runs, steps = steps, answered_no = no }
end

function out.json(res)
  local incidents, severities, runbooks = jsonout.array(), jsonout.array(), jsonout.array()
  for i, inc in ipairs(res.incidents) do incidents[i] = json_incident(inc) end
  for i, s in ipairs(res.severities) do
    severities[i] = { severity = s.severity, incidents = s.incidents, resolved = s.resolved,
      mttr = secs(s.mttr), median_time_to_resolve = secs(s.median_ttr) }
  end
  for i, rb in ipairs(res.runbooks) do runbooks[i] = json_runbook(rb) end
  local dry = 0
  for _, r in ipairs(res.runs) do if r.dry_run then dry = dry + 1 end end
  return { transcripts = { found = #res.files, used = #res.runs, dry_runs = dry, left_out = res.left },
    incidents = incidents, severities = severities, runbooks = runbooks }
end

local function names(inc)
  local list = {}
  for i, r in ipairs(inc.runs) do list[i] = r.runbook or "?" end
  return table.concat(list, ", ")
end

local function incidents_table(res)
  ui.print(ui.style("bold", string.format("incidents: %d (from %d of %d transcripts)", #res.incidents,
    #res.runs, #res.files)))
  if #res.incidents == 0 then return end
  local fmt = "%-24s  %-10s  %-4s  %-12s  %-12s  %-12s  %s"
  ui.print(ui.style("bold", string.format(fmt, "START (UTC)", "TARGET", "SEV", "DETECT", "MITIGATE", "RESOLVE",
    "RUNBOOKS")))
  local reported = false
  for _, inc in ipairs(res.incidents) do
    reported = reported or inc.start_source == "reported"
    ui.print(string.format(fmt, out.utc(inc.start) .. (inc.start_source == "reported" and "*" or ""),
      inc.target or "-", inc.severity, out.duration(inc.ttd), out.duration(inc.ttm),
      inc.resolved and out.duration(inc.ttr) or "open", names(inc)))
  end
  ui.print(ui.style("dim", reported and "(* the start as reported in triage; times are from the start)"
    or "(times are from the start)"))
end

local function severities_table(res)
  if #res.severities == 0 then return end
  ui.print("")
  local fmt = "%-4s  %9s  %8s  %-12s  %s"
  ui.print(ui.style("bold", string.format(fmt, "SEV", "INCIDENTS", "RESOLVED", "MTTR", "MEDIAN")))
  for _, s in ipairs(res.severities) do
    ui.print(string.format(fmt, s.severity, s.incidents, s.resolved, out.duration(s.mttr),
      out.duration(s.median_ttr)))
  end
end

local function runbook_table(rb)
  ui.print("")
  ui.print(ui.style("bold", string.format("runbook %s: %d run(s)", rb.runbook, rb.runs)))
  local width = 24       -- the STEP column fits the longest step id
  for _, st in ipairs(rb.step_order) do width = math.max(width, #tostring(st.id)) end
  local fmt = "  %-" .. width .. "s  %8s  %-10s  %-10s  %7s  %7s"
  ui.print(ui.style("bold", string.format(fmt, "STEP", "ATTEMPTS", "MEDIAN", "P90", "FAILED", "SKIPPED")))
  for _, st in ipairs(rb.step_order) do
    ui.print(string.format(fmt, st.id, st.attempts, out.duration(st.median), out.duration(st.p90),
      out.percent(st.failure_rate), out.percent(st.skip_rate)))
  end
  for _, q in ipairs(rb.answered_no) do
    ui.print(string.format("  answered no %d of %d: [%s] %s", q.no, q.asked, tostring(q.step), q.question))
  end
end

function out.table(res)
  incidents_table(res)
  severities_table(res)
  for _, rb in ipairs(res.runbooks) do runbook_table(rb) end
end

return out
