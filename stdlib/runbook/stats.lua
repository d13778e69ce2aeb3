-- runbook.stats: incident metrics from transcripts' events (runbook stats,
-- docs/stats.md says what each figure is measured from).
--
-- Pure: it takes the events report.load read and checked, and returns
-- tables; cmd/stats.lua reads the files, prints the table and the JSON.
--   stats.run(path, events, epoch)     -> the facts of one run (epoch: ts -> seconds)
--   stats.incidents(runs, gap)         -> runs grouped into incidents, measured
--   stats.by_severity(incidents)       -> MTTR per severity
--   stats.runbooks(runs)               -> per runbook: steps, answers "no"
--   stats.median(xs), stats.percentile(xs, p), stats.rate(n, of)
local stats = {}

local RANK = { P0 = 0, P1 = 1, P2 = 2, P3 = 3 }
-- A severity fixed by someone or by the runbook; a proposal is not one.
local DECIDED = { confirmed = true, changed = true, declared = true, raised = true }
-- Calls that change nothing the incident is about: the team lock, the
-- announcements, the files a runbook writes for people (notes, reports).
local NOT_A_FIX = { lock = true, notify = true, file = true }
-- The review of an incident, not its response: neither a fix nor its end.
stats.REVIEW = { ["post-incident"] = true }

-- The p-th percentile (0..100) of a list of numbers, by linear
-- interpolation between the closest ranks; nil for an empty list.
function stats.percentile(xs, p)
  if #xs == 0 then return nil end
  local s = {}
  for i, x in ipairs(xs) do s[i] = x end
  table.sort(s)
  local pos = 1 + (#s - 1) * p / 100
  local lo = math.floor(pos)
  local frac = pos - lo
  if lo >= #s then return s[#s] end
  return s[lo] + (s[lo + 1] - s[lo]) * frac
end

function stats.median(xs)
  return stats.percentile(xs, 50)
end

function stats.mean(xs)
  if #xs == 0 then return nil end
  local sum = 0
  for _, x in ipairs(xs) do sum = sum + x end
  return sum / #xs
end

-- n of `of` as a fraction 0..1; nil when of is 0.
function stats.rate(n, of)
  if of == 0 then return nil end
  return n / of
end

-- Seconds since the epoch of a reported time: the transcript's own
-- "2026-11-23T19:03:03.123Z", or triage's "2026-11-23 19:03:03 UTC"
-- (minutes alone too); nil for anything else ("10 minutes ago").
function stats.reported_time(text, epoch)
  if type(text) ~= "string" then return nil end
  local d, h, mi, s = text:match("^%s*(%d%d%d%d%-%d%d%-%d%d)[T ](%d%d):(%d%d):?(%d*)[%.%d]*%s*[UTCZ]*%s*$")
  if not d then return nil end
  return epoch(string.format("%sT%s:%s:%sZ", d, h, mi, s ~= "" and s or "00"))
end

local function call_is_fix(ev)
  return ev.mutating == true and ev.outcome == "ok" and not ev.dry_run and ev.scenario == nil
    and not NOT_A_FIX[ev.primitive]
end

-- The tally of a step's question in questions (by step and text), made
-- and appended to order (first asked first) when new: a run's and a
-- runbook's tallies alike.
local function question_row(questions, order, step, question)
  local key = tostring(step) .. "\0" .. question
  local row = questions[key]
  if row == nil then
    row = { question = question, step = step, asked = 0, no = 0 }
    questions[key] = row
    order[#order + 1] = row
  end
  return row
end

local function note_answer(run, ev)
  local a = type(ev.answer) == "string" and ev.answer:lower() or nil
  if a == nil then return end
  local q = question_row(run.questions, run.question_order, ev.step, ev.question)
  q.asked = q.asked + 1
  if a == "no" or a == "not done" then q.no = q.no + 1 end
end

-- What the reported start of the problem is, from triage's param or state.
local function reported_start(run, ev, epoch)
  local t
  if ev.event == "param" and ev.name == "started" then
    t = stats.reported_time(ev.value, epoch)
  elseif ev.event == "state" and type(ev.set) == "table" and type(ev.set.noted) == "table" then
    t = stats.reported_time(ev.set.noted.started, epoch)
  end
  if t and (run.reported == nil or t < run.reported) then run.reported = t end
end

local function step_end(run, ev, changed, epoch)
  if ev.reason ~= nil then return end          -- not run here (--start-at, --resume)
  run.attempts[#run.attempts + 1] = { id = ev.id, index = ev.index, title = run.titles[ev.id],
    status = ev.status, duration = type(ev.duration) == "number" and ev.duration or nil }
  if ev.status == "ok" and changed[ev.id] and run.mitigated == nil then
    run.mitigated = epoch(ev.ts)
  end
  changed[ev.id] = nil
end

-- One run's facts.  epoch turns a transcript ts into seconds.
function stats.run(path, events, epoch)
  local run = { path = path, attempts = {}, titles = {}, questions = {}, question_order = {},
    severities = {} }
  local changed = {}                         -- step id -> a fix was made in its current attempt
  for _, ev in ipairs(events) do
    local e = ev.event
    if e == "run.start" then
      run.id, run.runbook, run.header_severity = ev.run, ev.runbook, ev.severity
      run.target, run.dry_run, run.start, run.start_ts = ev.target, ev.dry_run == true, epoch(ev.ts), ev.ts
      run.resumed_from = type(ev.resumed_from) == "table" and ev.resumed_from.run or nil
    elseif e == "run.end" then
      run.finish, run.status = epoch(ev.ts), ev.status
    elseif e == "step.start" then
      run.titles[ev.id] = ev.title
    elseif e == "step.end" then
      step_end(run, ev, changed, epoch)
    elseif e == "call" and call_is_fix(ev) and ev.step then
      changed[ev.step] = true
      run.changed = true
    elseif e == "severity" and RANK[ev.level] then
      run.severities[#run.severities + 1] = { level = ev.level, decided = DECIDED[ev.action] == true,
        at = epoch(ev.ts) }
    elseif e == "confirm" or e == "prompt" or e == "manual" then
      note_answer(run, ev)
    end
    reported_start(run, ev, epoch)
    run.last = epoch(ev.ts) or run.last
  end
  run.review = stats.REVIEW[run.runbook] == true
  return run
end

-- ---- incidents ----------------------------------------------------------

local function worse(a, b)
  if a == nil then return b end
  if b == nil then return a end
  return RANK[a] <= RANK[b] and a or b
end

-- The incident's severity: the most severe level decided in its runs;
-- else the most severe proposed; else the most severe runbook header.
local function severity_of(inc)
  local decided, proposed, header
  for _, r in ipairs(inc.runs) do
    for _, s in ipairs(r.severities) do
      if s.decided then decided = worse(decided, s.level) else proposed = worse(proposed, s.level) end
    end
    if RANK[r.header_severity] then header = worse(header, r.header_severity) end
  end
  return decided or proposed or header or "none"
end

local function measure(inc)
  local first = inc.runs[1]
  inc.start, inc.start_source = first.start, "run.start"
  local last_fix
  for _, r in ipairs(inc.runs) do
    if r.reported and r.reported < inc.start then inc.start, inc.start_source = r.reported, "reported" end
    for _, s in ipairs(r.severities) do
      if s.decided and s.at and (inc.detected == nil or s.at < inc.detected) then inc.detected = s.at end
    end
    if not r.review and r.mitigated and (inc.mitigated == nil or r.mitigated < inc.mitigated) then
      inc.mitigated = r.mitigated
    end
    if not r.review and r.changed then last_fix = r end
  end
  if last_fix and last_fix.status == "done" then inc.resolved = last_fix.finish end
  inc.severity = severity_of(inc)
  local function since(t) return t and (t - inc.start) or nil end
  inc.ttd, inc.ttm, inc.ttr = since(inc.detected), since(inc.mitigated), since(inc.resolved)
  return inc
end

-- Runs grouped into incidents, oldest first: a run resumed from another
-- joins that run's incident; otherwise a run joins the latest incident on
-- the same target (no target is a target of its own) when it started at
-- most `gap` seconds after that incident's last run ended (or while it
-- ran).  Dry runs are rehearsals, not incidents: left out.  A review run
-- (post-incident) joins an incident as any run does, but starts none and
-- does not keep one open.
function stats.incidents(runs, gap)
  local sorted = {}
  for _, r in ipairs(runs) do
    if not r.dry_run and r.start then sorted[#sorted + 1] = r end
  end
  table.sort(sorted, function(a, b) return a.start < b.start end)
  local incidents, of_run, open = {}, {}, {}
  for _, r in ipairs(sorted) do
    local key = r.target or ""
    local inc = r.resumed_from and of_run[r.resumed_from]
    local cur = open[key]
    if inc == nil and cur and r.start <= cur.last_end + gap then inc = cur end
    if inc == nil and not r.review then
      inc = { runs = {}, target = r.target, last_end = r.start }
      incidents[#incidents + 1] = inc
    end
    if inc then
      inc.runs[#inc.runs + 1] = r
      of_run[r.id or r.path] = inc
      if not r.review then
        inc.last_end = math.max(inc.last_end, r.finish or r.last or r.start)
        open[key] = inc
      end
    end
  end
  for _, inc in ipairs(incidents) do measure(inc) end
  return incidents
end

-- MTTR per severity, most severe first: incidents, how many resolved,
-- the mean and median time to resolve of those resolved.
function stats.by_severity(incidents)
  local by, order = {}, {}
  for _, inc in ipairs(incidents) do
    local s = by[inc.severity]
    if s == nil then
      s = { severity = inc.severity, incidents = 0, resolved = 0, ttr = {} }
      by[inc.severity] = s
      order[#order + 1] = s
    end
    s.incidents = s.incidents + 1
    if inc.ttr then
      s.resolved = s.resolved + 1
      s.ttr[#s.ttr + 1] = inc.ttr
    end
  end
  table.sort(order, function(a, b) return (RANK[a.severity] or 9) < (RANK[b.severity] or 9) end)
  for _, s in ipairs(order) do s.mttr, s.median_ttr = stats.mean(s.ttr), stats.median(s.ttr) end
  return order
end

-- ---- runbooks -----------------------------------------------------------

local function step_row(rb, a)
  local st = rb.steps[a.id]
  if st == nil then
    st = { id = a.id, index = a.index, title = a.title, runs = 0, attempts = 0, failed = 0, skipped = 0,
      durations = {}, seen_in = {} }
    rb.steps[a.id] = st
    rb.step_order[#rb.step_order + 1] = st
  end
  st.title = st.title or a.title
  return st
end

-- One run's attempts into its runbook's step rows.
local function add_attempts(rb, run)
  local last = {}
  for _, a in ipairs(run.attempts) do
    local st = step_row(rb, a)
    if not st.seen_in[run] then st.seen_in[run], st.runs = true, st.runs + 1 end
    st.attempts = st.attempts + 1
    if a.status ~= "ok" then st.failed = st.failed + 1 end
    if a.status == "ok" and a.duration then st.durations[#st.durations + 1] = a.duration end
    last[a.id] = a.status
  end
  for id, status in pairs(last) do
    if status == "skipped" then rb.steps[id].skipped = rb.steps[id].skipped + 1 end
  end
end

local function add_questions(rb, run)
  for _, q in ipairs(run.question_order) do
    local row = question_row(rb.questions, rb.question_order, q.step, q.question)
    row.asked, row.no = row.asked + q.asked, row.no + q.no
  end
end

-- Per runbook (by name, sorted): its runs, each step's attempts, failures
-- (attempts that did not end ok), skips (runs whose last attempt of the
-- step was skipped), the median and 90th percentile of its successful
-- attempts' durations; and the questions answered "no" (or "not done").
function stats.runbooks(runs)
  local by, order = {}, {}
  for _, run in ipairs(runs) do
    if not run.dry_run and run.runbook then
      local rb = by[run.runbook]
      if rb == nil then
        rb = { runbook = run.runbook, runs = 0, steps = {}, step_order = {}, questions = {}, question_order = {} }
        by[run.runbook] = rb
        order[#order + 1] = rb
      end
      rb.runs = rb.runs + 1
      add_attempts(rb, run)
      add_questions(rb, run)
    end
  end
  table.sort(order, function(a, b) return a.runbook < b.runbook end)
  for _, rb in ipairs(order) do
    table.sort(rb.step_order, function(a, b) return (a.index or 0) < (b.index or 0) end)
    for _, st in ipairs(rb.step_order) do
      st.failure_rate, st.skip_rate = stats.rate(st.failed, st.attempts), stats.rate(st.skipped, st.runs)
      st.median, st.p90 = stats.median(st.durations), stats.percentile(st.durations, 90)
    end
    local no = {}
    for _, q in ipairs(rb.question_order) do
      if q.no > 0 then no[#no + 1] = q end
    end
    rb.answered_no = no
  end
  return order
end

return stats
