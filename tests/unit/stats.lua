-- runbook.stats: the median, percentile and rate arithmetic, reading a
-- reported time, and grouping runs into incidents (what detect, mitigate
-- and resolve are taken from), on events built here.  Run by lua5.4 with
-- stdlib/ on package.path (tests/CMakeLists.txt); the module is pure.
local SOURCE = assert(os.getenv("RB_SOURCE_DIR"), "RB_SOURCE_DIR not set")
package.path = SOURCE .. "/stdlib/?.lua;" .. package.path
local stats = require("runbook.stats")

local check = dofile(SOURCE .. "/tests/unit/lib/check.lua")
local test, eq = check.test, check.eq

local function near(got, want, what)
  if got == nil or math.abs(got - want) > 1e-9 then
    error(string.format("%s: expected %s, got %s", what, tostring(want), tostring(got)), 2)
  end
end

test("median of odd and even counts, unsorted input left as it was", function()
  local xs = { 5, 1, 3 }
  eq(stats.median(xs), 3, "median of 3")
  eq(xs[1], 5, "the input is not sorted in place")
  near(stats.median({ 4, 1, 3, 2 }), 2.5, "median of 4")
  eq(stats.median({ 7 }), 7, "median of 1")
  eq(stats.median({}), nil, "median of none")
end)

test("percentiles interpolate between ranks", function()
  local xs = { 10, 20, 30, 40, 50 }
  eq(stats.percentile(xs, 0), 10, "p0")
  eq(stats.percentile(xs, 100), 50, "p100")
  near(stats.percentile(xs, 90), 46, "p90: 1 + 4*0.9 = rank 4.6")
  near(stats.percentile({ 1, 2 }, 90), 1.9, "p90 of two")
  eq(stats.percentile({}, 90), nil, "p90 of none")
end)

test("rates and means, none when there is nothing to divide by", function()
  near(stats.rate(1, 4), 0.25, "1 of 4")
  eq(stats.rate(0, 0), nil, "0 of 0")
  near(stats.mean({ 1, 2, 6 }), 3, "mean")
  eq(stats.mean({}), nil, "mean of none")
end)

-- "2026-01-01T00:00:10.500Z" -> seconds, for the events below
local function epoch(ts)
  local h, mi, s = ts:match("T(%d+):(%d+):([%d%.]+)Z$")
  return tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(s)
end

test("a reported start is read in the transcript's and triage's forms only", function()
  eq(stats.reported_time("2026-01-01 00:01:00 UTC", epoch), 60, "triage's form")
  eq(stats.reported_time("2026-01-01T00:02:00Z", epoch), 120, "ISO form")
  eq(stats.reported_time("2026-01-01 00:03", epoch), 180, "minutes only")
  eq(stats.reported_time("10 minutes ago", epoch), nil, "free text")
  eq(stats.reported_time(nil, epoch), nil, "nothing")
end)

local function ts(s) return string.format("2026-01-01T00:%02d:%06.3fZ", s // 60, s % 60) end

-- A run of `name` starting at t0 that declares `level` at t0+d, changes
-- something in step "fix" ending ok at t0+m, and ends `status` at t0+e.
local function events(name, t0, o)
  local ev = {
    { event = "run.start", ts = ts(t0), run = name .. t0, runbook = name, target = o.target,
      dry_run = o.dry_run, severity = o.header },
  }
  if o.started then ev[#ev + 1] = { event = "param", ts = ts(t0), name = "started", value = o.started } end
  if o.level then ev[#ev + 1] = { event = "severity", ts = ts(t0 + o.d), action = o.action or "declared", level = o.level } end
  ev[#ev + 1] = { event = "step.start", ts = ts(t0 + 1), id = "fix", index = 1, title = "Fix" }
  if o.m then
    ev[#ev + 1] = { event = "call", ts = ts(t0 + 1), step = "fix", primitive = "exec", outcome = "ok",
      mutating = o.mutating ~= false }
    ev[#ev + 1] = { event = "step.end", ts = ts(t0 + o.m), id = "fix", index = 1, status = "ok", duration = o.m - 1 }
  end
  if o.e then ev[#ev + 1] = { event = "run.end", ts = ts(t0 + o.e), status = o.status or "done" } end
  return stats.run(name .. ".jsonl", ev, epoch)
end

test("detect, mitigate and resolve are measured from the reported start", function()
  local r = events("fixit", 100, { started = "2026-01-01 00:01:00 UTC", level = "P1", d = 5, m = 20, e = 30 })
  local inc = stats.incidents({ r }, 3600)
  eq(#inc, 1, "one incident")
  eq(inc[1].start_source, "reported", "start source")
  eq(inc[1].ttd, 45, "detect: 105 - 60")
  eq(inc[1].ttm, 60, "mitigate: 120 - 60")
  eq(inc[1].ttr, 70, "resolve: 130 - 60")
  eq(inc[1].severity, "P1", "severity")
end)

test("a proposal is no detection; no change is no mitigation and the incident stays open", function()
  local r = events("look", 0, { level = "P2", action = "proposed", d = 2, m = 5, e = 9, mutating = false })
  local inc = stats.incidents({ r }, 3600)[1]
  eq(inc.ttd, nil, "detect")
  eq(inc.ttm, nil, "mitigate")
  eq(inc.ttr, nil, "resolve")
  eq(inc.severity, "P2", "a proposal is the severity when nothing was decided")
end)

test("a fix run that failed leaves the incident open", function()
  local r = events("fixit", 0, { level = "P1", d = 1, m = 5, e = 9, status = "failed" })
  local inc = stats.incidents({ r }, 3600)[1]
  eq(inc.ttm, 5, "mitigated")
  eq(inc.ttr, nil, "not resolved")
end)

test("runs on one target within the gap are one incident; another target, a dry run are not", function()
  local a = events("triage", 0, { level = "P2", d = 3, e = 10, target = "prod" })
  local b = events("fixit", 100, { level = "P0", action = "raised", d = 1, m = 20, e = 40, target = "prod" })
  local c = events("fixit", 50, { level = "P3", d = 1, m = 5, e = 9, target = "staging" })
  local d = events("fixit", 60, { level = "P3", d = 1, m = 5, e = 9, target = "prod", dry_run = true })
  local inc = stats.incidents({ b, c, a, d }, 3600)
  eq(#inc, 2, "prod and staging")
  eq(#inc[1].runs, 2, "triage and the fix on prod")
  eq(inc[1].severity, "P0", "the worst level decided")
  eq(inc[1].ttd, 3, "detected by the first run")
  eq(inc[1].ttm, 120, "mitigated in the second")
  eq(inc[1].ttr, 140, "resolved at its end")
  eq(#stats.incidents({ a, b }, 60)[1].runs, 1, "a gap of 60 s keeps them apart")
  local sev = stats.by_severity(inc)
  eq(sev[1].severity, "P0", "most severe first")
  eq(sev[1].mttr, 140, "P0 MTTR")
  eq(sev[2].severity, "P3", "then P3")
end)

test("a review run (post-incident) neither resolves nor opens an incident", function()
  local fix = events("fixit", 0, { level = "P1", d = 1, m = 5, e = 9 })
  local review = events("post-incident", 20, { m = 25, e = 30 })
  local inc = stats.incidents({ fix, review }, 3600)
  eq(#inc, 1, "one incident")
  eq(#inc[1].runs, 2, "the review joins it")
  eq(inc[1].ttr, 9, "resolved by the fix, not by the review's write")
  eq(#stats.incidents({ review }, 3600), 0, "a review alone is no incident")
end)

test("step rates: failed attempts of attempts, skipped runs of runs", function()
  local function run(statuses)
    local ev = { { event = "run.start", ts = ts(0), run = "r" .. #statuses, runbook = "rb" } }
    for i, st in ipairs(statuses) do
      ev[#ev + 1] = { event = "step.start", ts = ts(i), id = "s", index = 1, title = "S" }
      ev[#ev + 1] = { event = "step.end", ts = ts(i), id = "s", index = 1, status = st, duration = i }
    end
    ev[#ev + 1] = { event = "step.end", ts = ts(9), id = "t", index = 2, status = "skipped", reason = "--start-at" }
    return stats.run("x", ev, epoch)
  end
  local rb = stats.runbooks({ run({ "failed", "ok" }), run({ "failed", "failed", "skipped" }) })[1]
  local s = rb.step_order[1]
  eq(#rb.step_order, 1, "a step passed over by --start-at is not counted")
  eq(s.attempts, 5, "attempts")
  eq(s.failed, 4, "failed attempts")
  near(s.failure_rate, 0.8, "failure rate")
  eq(s.skipped, 1, "runs that skipped it")
  near(s.skip_rate, 0.5, "skip rate")
  eq(s.median, 2, "median of the ok attempts' durations")
end)

check.finish()
