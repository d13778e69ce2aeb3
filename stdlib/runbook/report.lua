-- runbook.report: transcripts -> a Markdown incident timeline.
--
-- report.load(paths) reads and verifies each transcript; report.markdown()
-- renders the summary, a merged timeline, the actions taken and who
-- confirmed what.  The post-incident runbook builds its report on this.
-- Each loaded run also carries its chart (report.lanes: steps, waits,
-- marks) and its verification as data, which runbook.report_html draws.
local cjson_null = require("cjson").null
local record = require("runbook.record")

local report = {}

-- lua-cjson decodes every number as a float: show 200, not 200.0.
local function num(v)
  if math.type(v) == "float" and v == math.floor(v) and math.abs(v) < 2 ^ 53 then
    return string.format("%d", v)
  end
  return tostring(v)
end
report.num = num

local function md(s)
  if type(s) == "number" then s = num(s) end
  return (tostring(s or ""):gsub("|", "\\|"):gsub("\n", " "))
end

local function plain_text(s)
  if type(s) == "number" then s = num(s) end
  return (tostring(s or ""):gsub("\n", " "))
end

local function short(s, n)
  s = tostring(s or ""):gsub("%s+", " ")
  if #s > n then s = s:sub(1, n - 3) .. "..." end
  return s
end

-- Seconds since the epoch from "2026-11-23T19:03:03.123Z".
function report.epoch(ts)
  local y, mo, d, h, mi, s, ms = tostring(ts):match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)%.?(%d*)Z$")
  if not y then return nil end
  local days = os.time({ year = tonumber(y), month = tonumber(mo), day = tonumber(d), hour = 12 })
  local noon_utc = os.time(os.date("!*t", days))
  local base = days + (days - noon_utc)   -- local noon -> UTC noon
  return base - 12 * 3600 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(s) + (tonumber(ms ~= "" and ms or "0") / 1000)
end

function report.duration(seconds)
  if seconds == nil then return "?" end
  if seconds < 9.95 then return string.format("%.1f s", seconds) end   -- a drill's 0.3 s is not "0 s"
  seconds = math.floor(seconds + 0.5)
  if seconds < 60 then return string.format("%d s", seconds) end
  if seconds < 3600 then return string.format("%d min %02d s", seconds // 60, seconds % 60) end
  return string.format("%d h %02d min", seconds // 3600, (seconds % 3600) // 60)
end

-- The chart of one run, worked out here once for every renderer: a lane
-- per step, in the order the steps first started, holding its attempts as
-- bars, the approvals and notifications made in it as marks, and under it
-- its waits: a question that waited for the operator or an approver (from
-- its `waiting` event to the event that answered it), a question answered
-- at once (answers file, --yes: a point), a wait() or poll() (a call event
-- records its end and duration).  Times are seconds since the epoch.
local lanes_on = {}

local function lane_of(c, id, title, index)
  id = id or c.current
  if id == nil then return c.run_lane end
  local l = c.by_id[id]
  if not l then
    l = { id = id, title = title or id, index = index, bars = {}, marks = {}, waits = {} }
    c.by_id[id] = l
    c.list[#c.list + 1] = l
  end
  if title then l.title = title end
  return l
end

-- A question waiting ends at the next thing the run records that answers
-- or supersedes it: the run waits for nothing else meanwhile.
local function close_wait(c, t, ev)
  local w = c.wait
  if not w then return nil end
  w.t1, c.wait = t, nil
  if ev and ev.answer ~= nil then w.answer, w.source = ev.answer, ev.source end
  return w
end

local function add_wait(lane, w)
  lane.waits[#lane.waits + 1] = w
  return w
end

lanes_on["step.start"] = function(c, ev, t)
  local l = lane_of(c, ev.id, ev.title, ev.index)
  c.current = ev.id
  l.open = { t0 = t, attempt = math.tointeger(ev.attempt) or 1 }
  l.bars[#l.bars + 1] = l.open
end

lanes_on["step.end"] = function(c, ev, t)
  close_wait(c, t, nil)
  local l = lane_of(c, ev.id, nil, ev.index)
  local bar = l.open
  if not bar then     -- skipped by --start-at or --resume: it never started
    bar = { t0 = t, attempt = 1 }
    l.bars[#l.bars + 1] = bar
  end
  -- The attempt ended before the retry/skip/abort question was answered.
  bar.t1 = type(ev.duration) == "number" and l.open and math.min(bar.t0 + ev.duration, t) or t
  bar.status, bar.error, bar.decision, bar.reason = ev.status, ev.error, ev.decision, ev.reason
  l.open, c.current = nil, nil
end

function lanes_on.waiting(c, ev, t)
  close_wait(c, t, nil)
  c.wait = add_wait(lane_of(c, ev.step), { kind = ev.on == "approval" and "approval" or "operator",
    label = tostring(ev.question or ev.on or "?"), t0 = t })
end

local function answered(c, ev, t)
  if not close_wait(c, t, ev) then
    add_wait(lane_of(c, ev.step), { kind = "answered", label = ev.question, t0 = t, t1 = t,
      answer = ev.answer, source = ev.source })
  end
end
lanes_on.confirm, lanes_on.prompt, lanes_on.manual = answered, answered, answered

function lanes_on.approval(c, ev, t)
  local lane = lane_of(c, ev.step)
  if not ev.dry_run and not close_wait(c, t, nil) then
    add_wait(lane, { kind = "answered", label = tostring(ev.question), t0 = t, t1 = t,
      answer = ev.approved and "approved" or "rejected", source = ev.source })
  end
  lane.marks[#lane.marks + 1] = { kind = ev.approved and "approval" or "rejected", t = t, ev = ev }
end

lanes_on["approval.refused"] = function(c, ev, t)
  local lane = lane_of(c, ev.step)
  lane.marks[#lane.marks + 1] = { kind = "refused", t = t, ev = ev }
end

function lanes_on.notify(c, ev, t)
  local lane = lane_of(c, ev.step)
  local ok = type(ev.channels) == "table" and #ev.channels > 0
  for _, ch in ipairs(type(ev.channels) == "table" and ev.channels or {}) do
    ok = ok and type(ch) == "table" and ch.ok == true
  end
  lane.marks[#lane.marks + 1] = { kind = "notify", t = t, ev = ev, ok = ok }
end

function lanes_on.call(c, ev, t)
  if ev.primitive ~= "wait" and ev.primitive ~= "poll" then return end
  local a = type(ev.args) == "table" and ev.args or {}
  local label = ev.primitive == "wait" and ("wait " .. num(a.seconds or "?") .. " s")
    or string.format("poll: %s (%s tries)", tostring(a.what or "condition"), num(ev.attempts or "?"))
  local dur = type(ev.duration) == "number" and ev.duration or 0
  add_wait(lane_of(c, ev.step), { kind = "timer", label = label, t0 = t - dur, t1 = t,
    outcome = ev.outcome })
end

lanes_on.interrupt = function(c, _, t) close_wait(c, t, nil) end

-- Lanes and their extent {t0, t1} from a run's events (checked by
-- read_checked: every ts parses).  Whatever is still open at the last
-- event did not finish.
function report.lanes(events)
  local c = { by_id = {}, list = {}, run_lane = { bars = {}, marks = {}, waits = {} } }
  local t0, t1
  for _, ev in ipairs(events) do
    local t = report.epoch(ev.ts)
    t0, t1 = t0 or t, t
    local on = lanes_on[ev.event]
    if on then on(c, ev, t) end
  end
  if c.wait then c.wait.unfinished = true end
  close_wait(c, t1, nil)
  for _, l in ipairs(c.list) do
    if l.open then l.open.t1, l.open.status = t1, "unfinished" end
    l.open = nil
  end
  return { t0 = t0, t1 = t1, steps = c.list, run = c.run_lane }
end

-- One run's facts from its events.
local function summarize(path, events, verified)
  local run = { path = path, events = events, verified = verified, params = {}, steps = {},
    decisions = {}, actions = {}, failures = {} }
  for _, ev in ipairs(events) do
    if ev.event == "run.start" then
      run.id, run.runbook, run.title, run.severity = ev.run, ev.runbook, ev.title, ev.severity
      run.operator, run.host, run.dry_run, run.target = ev.operator, ev.host, ev.dry_run, ev.target
      run.start = ev.ts
    elseif ev.event == "param" then
      run.params[#run.params + 1] = ev
    elseif ev.event == "run.end" then
      run.finish, run.status = ev.ts, ev.status
    elseif ev.event == "confirm" or ev.event == "prompt" or ev.event == "manual" then
      run.decisions[#run.decisions + 1] = ev
    elseif ev.event == "call" and ev.primitive ~= "wait" and ev.primitive ~= "poll" then
      run.actions[#run.actions + 1] = ev
    elseif ev.event == "step.end" and ev.status ~= "ok" and ev.error then
      run.failures[#run.failures + 1] = ev
    end
    if ev.event == "step.start" then run.steps[ev.id] = ev.title end
    run.last = ev.ts
  end
  run.lanes = report.lanes(events)
  return run
end

-- The members report reads, by event; "?" marks an optional one.  A
-- transcript that does not have them (edited by hand, another tool's JSON
-- lines) is refused with its file:line instead of failing half-way.
local COMMON = { { "seq", "number" }, { "ts", "string" }, { "run", "string" }, { "event", "string" } }
local SHAPES = {
  ["run.start"] = { { "runbook", "string" } },
  ["step.start"] = { { "id", "string" }, { "index", "number" }, { "title", "string" }, { "attempt", "number?" } },
  ["step.end"] = { { "id", "string" }, { "index", "number" }, { "status", "string" },
    { "error", "string?" }, { "decision", "string?" } },
  call = { { "primitive", "string" }, { "outcome", "string" }, { "args", "table?" }, { "result", "table?" } },
  confirm = { { "question", "string" } },
  prompt = { { "question", "string" } },
  manual = { { "question", "string" } },
  log = { { "level", "string" } },
}

local function bad_member(ev, key, want, label)
  local v = ev[key]
  local optional = want:sub(-1) == "?"
  local kind = optional and want:sub(1, -2) or want
  if v == nil and optional then return nil end
  if v == nil then return string.format("%s has no %s", label, key) end
  if type(v) ~= kind then
    return string.format("%s's %s is %s, expected a %s", label, key, v == cjson_null and "null" or type(v), kind)
  end
end

local function check_event(ev)
  for _, m in ipairs(COMMON) do
    local why = bad_member(ev, m[1], m[2], "the line")
    if why then return why end
  end
  if not report.epoch(ev.ts) then
    return string.format("ts %q is not a UTC time like 2026-11-23T19:03:03.123Z", ev.ts)
  end
  for _, m in ipairs(SHAPES[ev.event] or {}) do
    local why = bad_member(ev, m[1], m[2], ev.event .. " event")
    if why then return why end
  end
  local argv = type(ev.args) == "table" and ev.args.argv
  if argv ~= nil and argv ~= false then
    if type(argv) ~= "table" then return "call event's args.argv is not a list" end
    for _, a in ipairs(argv) do
      if type(a) ~= "string" and type(a) ~= "number" then return "call event's args.argv holds a " .. type(a) end
    end
  end
end

-- The events of one transcript, checked; nil and "FILE:LINE: what" when
-- it cannot be reported on.
local function read_checked(path)
  local okr, events, ok, res = pcall(record.read, path)
  if not okr then return nil, tostring(events) end
  if #events == 0 then return nil, string.format("%s: %s", path, res.reason or "no events") end
  local has_start = false
  for n, ev in ipairs(events) do
    local why = check_event(ev)
    if why then return nil, string.format("%s:%d: %s", path, n, why) end
    has_start = has_start or ev.event == "run.start"
  end
  if not has_start then
    return nil, string.format("%s: no run.start event: not a runbook transcript", path)
  end
  return events, ok, res
end

function report.load(paths)
  local runs = {}
  for _, path in ipairs(paths) do
    local events, ok, res = read_checked(path)
    if not events then return nil, ok end
    local verified = ok and string.format("verified, %d lines, final hash `%s`", res.lines, res.last_hash)
      or string.format("**does not verify** at line %d: %s", res.bad_line, res.reason)
    local run = summarize(path, events, verified)
    run.verify = { ok = ok and true or false, lines = res.lines, hash = res.last_hash, bad_line = res.bad_line,
      reason = res.reason }
    runs[#runs + 1] = run
  end
  return runs
end

function report.call_text(ev)
  local a = ev.args or {}
  local what
  if ev.primitive == "exec" or ev.primitive == "sh" then
    what = "`" .. short(table.concat(a.argv or {}, " "), 80) .. "`"
  else
    local command = a.command       -- redis records its argv as a list
    if type(command) == "table" then command = table.concat(command, " ") end
    what = "`" .. short(a.describe or a.url or a.sql or a.cmd or command or a.path or ev.primitive, 80) .. "`"
  end
  local outcome = ev.outcome
  local code = ev.result and ev.result.code
  -- the call worked but the command did not: a non-zero exit is a failure
  if code ~= nil and code ~= 0 and outcome == "ok" then outcome = "failed" end
  if code ~= nil then outcome = outcome .. ", exit " .. num(code) end
  if ev.result and ev.result.status ~= nil then outcome = outcome .. ", status " .. num(ev.result.status) end
  if ev.dry_run then outcome = "simulated (dry run)" end
  if ev.scenario then outcome = outcome .. " (scenario: " .. tostring(ev.scenario) .. ")" end
  return string.format("%s %s: %s", ev.primitive, what, outcome)
end

local function strong(s) return "**" .. s .. "**" end
local function as_is(s) return s end

-- One event as a line of the report (markdown), or with plain = true as
-- plain text (runbook watch, the HTML page): a value's own asterisks (a
-- redacted "***") stay as they are.
function report.describe(ev, plain)
  if plain then return report.describe_with(ev, plain_text, as_is) end
  return report.describe_with(ev, md, strong)
end

-- An approval in plain words (the HTML page's marks).
function report.plain_approval(ev) return report.approval_text(ev, plain_text, as_is) end

-- One event in words, its values passed through md and its emphasis
-- through b.
function report.describe_with(ev, md, b)
  local e = ev.event
  if e == "run.start" then
    return string.format("Run of %s started by %s on %s%s", b(md(ev.runbook)), md(ev.operator), md(ev.host),
      ev.dry_run and " (dry run)" or "")
  elseif e == "run.end" then return "Run ended: " .. b(md(ev.status))
  elseif e == "step.start" then
    return string.format("Step %s \"%s\" started%s", md(ev.index), md(ev.title),
      (ev.attempt or 1) > 1 and (" (attempt " .. string.format("%d", ev.attempt) .. ")") or "")
  elseif e == "step.end" then
    local t = string.format("Step %s %s", md(ev.index), md(ev.status))
    if ev.error then t = t .. ": " .. md(short(ev.error, 120)) end
    if ev.decision then t = t .. " -> " .. md(ev.decision) end
    return t
  elseif e == "call" then return md(report.call_text(ev))
  elseif e == "confirm" or e == "prompt" or e == "manual" then
    return string.format("%s \"%s\" -> %s (%s)", e, md(short(ev.question, 100)), md(ev.answer), md(ev.source))
  elseif e == "approval" or e == "approval.refused" then return report.approval_text(ev, md, b)
  elseif e == "log" then return string.format("%s: %s", md(ev.level), md(short(ev.message, 140)))
  elseif e == "notify" then return "notified: " .. md(short(ev.text, 120))
  elseif e == "interrupt" then return "Ctrl-C"
  elseif e == "waiting" then
    return string.format("waiting for %s: \"%s\"", ev.on == "approval" and "approval" or "the operator",
      md(short(ev.question, 100)))
  elseif e == "severity" then
    return string.format("severity %s%s: %s by %s", md(ev.action),
      ev.previous and (" from " .. md(ev.previous)) or "", b(md(ev.level)), md(ev.by))
  end
  return md(e)
end

-- An approval event in words: who approved or rejected, how the identity
-- is known (the room's store, or the operator's attestation), their words.
-- esc and bold default to the markdown report's (plain text: runbook
-- watch, the HTML page, passes its own, so a value's "***" stays).
function report.approval_text(ev, esc, bold)
  local md, b = esc or md, bold or strong
  local q = md(short(tostring(ev.question), 100))
  if ev.event == "approval.refused" then
    return string.format("approval \"%s\" from %s %s", q, md(ev.by), md(short(tostring(ev.reason), 160)))
  end
  if ev.dry_run then return string.format("approval \"%s\" would be waited for (dry run)", q) end
  if ev.timed_out then return string.format("approval \"%s\": none within %s s", q, md(ev.timed_out)) end
  local t = string.format("approval \"%s\" -> %s by %s", q, b(ev.approved and "approved" or "rejected"),
    md(ev.by))
  if ev.attested then
    t = t .. " (attested by the operator " .. md(ev.attested_by) .. ", not checked by any store)"
  elseif ev.os_user or ev.host then
    t = t .. string.format(" (%s@%s, identity from the room's store)", md(ev.os_user), md(ev.host))
  end
  if ev.text then t = t .. ": \"" .. md(short(ev.text, 100)) .. "\"" end
  return t
end

local function run_summary(w, r)
  local dur = r.start and r.last and (report.epoch(r.last) - report.epoch(r.start))
  w("## Run %s", md(r.id))
  w("")
  w("| | |")
  w("|---|---|")
  w("| Runbook | %s%s |", md(r.runbook), r.severity and (" (" .. r.severity .. ")") or "")
  w("| Operator | %s on %s |", md(r.operator), md(r.host))
  if r.target then w("| Target | %s |", md(r.target)) end
  w("| Start | %s |", md(r.start))
  w("| End | %s |", md(r.finish or (r.last and (r.last .. " (no run.end: the run did not finish)"))))
  w("| Duration | %s |", report.duration(dur))
  w("| Status | %s%s |", md(r.status or "unfinished"), r.dry_run and " (dry run)" or "")
  w("| Transcript | `%s`: %s |", md(r.path), r.verified)
  if #r.params > 0 then
    local ps = {}
    for _, p in ipairs(r.params) do ps[#ps + 1] = md(p.name) .. "=" .. md(p.value) end
    w("| Params | %s |", table.concat(ps, ", "))
  end
  w("")
end

-- Every event of every run, in time order.
function report.merge(runs)
  local merged = {}
  for _, r in ipairs(runs) do
    for _, ev in ipairs(r.events) do merged[#merged + 1] = { ev = ev, run = r } end
  end
  table.sort(merged, function(a, b)
    if a.ev.ts ~= b.ev.ts then return tostring(a.ev.ts) < tostring(b.ev.ts) end
    return (a.ev.seq or 0) < (b.ev.seq or 0)
  end)
  return merged
end

local function timeline(w, merged, several)
  w("## Timeline (UTC)")
  w("")
  w("| Time | %sEvent |", several and "Run | " or "")
  w("|---|%s---|", several and "---|" or "")
  for _, m in ipairs(merged) do
    if m.ev.event ~= "param" then
      w("| %s | %s%s |", md(tostring(m.ev.ts):gsub("^%d+-%d+-%d+T", ""):gsub("Z$", "")),
        several and (md(m.run.runbook) .. " | ") or "", report.describe(m.ev))
    end
  end
  w("")
end

local function actions(w, merged)
  w("## Actions taken")
  w("")
  local any = false
  for _, m in ipairs(merged) do
    if m.ev.event == "call" and m.ev.primitive ~= "wait" and m.ev.primitive ~= "poll" then
      w("- %s %s", md(m.ev.ts), md(report.call_text(m.ev)))
      any = true
    end
  end
  if not any then w("- none recorded") end
  w("")
end

local function confirmations(w, merged)
  w("## Who confirmed what")
  w("")
  local any = false
  for _, m in ipairs(merged) do
    local ev = m.ev
    if ev.event == "step.end" and ev.decision then
      w("- %s: step %s %s, decision **%s** by %s", md(ev.ts), md(ev.id), md(ev.status), md(ev.decision),
        md(ev.decided_by == "operator" and m.run.operator or ev.decided_by))
      any = true
    elseif ev.event == "confirm" or ev.event == "manual" then
      local who = ev.source == "operator" and m.run.operator or (ev.source or "?")
      w("- %s: \"%s\" -> **%s** by %s", md(ev.ts), md(ev.question), md(ev.answer), md(who))
      any = true
    elseif ev.event == "approval" and not ev.dry_run then
      w("- %s: %s", md(ev.ts), report.approval_text(ev))
      any = true
    end
  end
  if not any then w("- no confirmations recorded") end
  w("")
end

function report.markdown(runs, opts)
  opts = opts or {}
  local out = {}
  local function w(fmt, ...) out[#out + 1] = select("#", ...) > 0 and string.format(fmt, ...) or fmt end
  local first = runs[1] or {}
  w("# Incident timeline: %s", md(opts.title or first.title or first.runbook or "runbook"))
  w("")
  for _, r in ipairs(runs) do run_summary(w, r) end
  local merged = report.merge(runs)
  timeline(w, merged, #runs > 1)
  actions(w, merged)
  confirmations(w, merged)
  return table.concat(out, "\n")
end

return report
