-- triage: the first five minutes of an incident.  Look at everything
-- (health endpoints, services, error logs, the database, Redis) without
-- changing anything, propose a severity from what was found, let the
-- operator confirm or change it, and announce it.
--
--   runbook run triage --target prod -p scope="checkout returns 500s"
--   runbook run triage --target prod --dry-run      (the same checks; nothing is sent)
--
-- Target keys it reads (docs/targets.md): health, slow_after, services,
-- manager (+ compose_file / commands / pm2_bin, pm2_home / supervisor_conf
-- / ssh), db, redis; notify channels
-- from the config.  A missing key skips its check with a note saying what
-- to add; when the target gives nothing at all to check (no --target?),
-- the severity step fails rather than propose an all-clear.  The db URL's
-- role needs pg_monitor (or to own the sessions) to see other roles'
-- queries in pg_stat_activity.
--
-- Error log lines count only from the last log_window seconds (600):
-- journalctl and docker compose select them by time; for pm2, supervisor
-- and commands the lines' own timestamps decide, and a finding says how
-- old the newest error line is, or that the lines carry no time.
--
-- Resumed (--resume) past the checks, the severity step proposes from
-- what the first run's checks found (the incident's severity is what was
-- found, even if it has recovered since; the operator confirms or changes
-- it), and runs only the checks that did not run.  Started (--start-at)
-- past them, it runs them all first.  The announcement is only ever a
-- severity confirmed in this run or in the run it resumes.
local health = require("health")
local incident = require("incident")
local pg = require("pg")
local service = require("service")

runbook {
  name = "triage",
  title = "Triage: the first five minutes of an incident",
  severity = "P1",
  description = "Notes the start time and scope; checks health endpoints, service status, " ..
    "the error log lines of the last 10 minutes (log_window), database connectivity, " ..
    "connections and long-running queries, and Redis; proposes a severity (P0-P3) for the operator to confirm or " ..
    "change, and announces it through notify.  Changes nothing but the announcement.",
}

param("scope", { help = "what is affected, as reported (asked when not given)" })
param("started", { help = "when the problem started, as reported (default: now)" })
param("service", { help = "look at this service only (default: the target's services)" })
param("long_query", { help = "seconds after which a running query counts as long-running", default = 30 })
param("slow_after", { help = "seconds over which a response counts as slow (P1)" })
param("log_window", { help = "seconds of error log that count (older error lines are left out where " ..
  "the manager or the line's timestamp tells its time)", default = 600 })

-- What the steps share, in `state` (recorded at each step end, restored
-- by --resume): state.noted (start time and scope), the findings,
-- state.ran (check id -> when it ran), state.checked (check id -> true
-- when the target gave it something to check), state.severity once
-- confirmed.  A run started past the check steps has none of it: the
-- severity step then runs the missing checks itself (they only read), so
-- that a proposal never rests on checks that did not run.
local findings = incident.findings()
local ran_here = {}     -- check id -> true once it ran in this process
local CHECKS = { "health", "status", "logs", "database", "redis" }
local run_check = {}    -- check id -> function(p)

local function found(check, kind, what)
  findings:add(check, kind, what)
end

-- A check's findings are those of its latest run (a retried step does
-- not count twice).
local function begin_check(id)
  findings:clear(id)
  state.ran, state.checked = state.ran or {}, state.checked or {}
  state.ran[id], state.checked[id] = os.date("!%H:%M:%S UTC"), nil
  ran_here[id] = true
end

local function mark_checked(id)
  state.checked[id] = true
end

local function services(p)
  if p.service then return { p.service } end
  return service.list()
end

local function ms(seconds) return health.ms(seconds) end

local function age_text(seconds)
  seconds = math.floor(seconds + 0.5)
  if seconds < 120 then return string.format("%d s", seconds) end
  if seconds < 7200 then return string.format("%d min", seconds // 60) end
  if seconds < 172800 then return string.format("%d h %d min", seconds // 3600, seconds % 3600 // 60) end
  return string.format("%d days", seconds // 86400)
end

local function note_start(p, resumed)
  local noted = { triage_started = os.date("!%Y-%m-%d %H:%M:%S UTC") }
  state.noted = noted
  noted.started = p.started or (resumed and "(not known: the start step did not run in this run; " ..
    "pass -p started=...)") or noted.triage_started
  noted.scope = p.scope or prompt("What is affected (scope)?", { default = "not yet known" })
  log.info("triage started %s on target %s", noted.triage_started, target.name or "(none)")
  log.info("problem started: %s", noted.started)
  log.info("scope: %s", noted.scope)
end

step("Note the start time and scope", { id = "start" }, function(p)
  note_start(p, false)
end)

function run_check.health(p)
  if target.health == nil then
    log.warn("no health endpoints: add health = { \"https://.../health\" } to the target")
    return
  end
  mark_checked("health")
  local results = health.check(target.health, { slow_after = tonumber(p.slow_after) })
  log.info(health.summary(results).text)
  for _, f in ipairs(health.findings(results)) do found("health", f.kind, f.what) end
end

function run_check.status(p)
  local list = services(p)
  if #list == 0 then
    log.warn("no services: add services = { \"api\" } and manager = ... to the target, or pass -p service=NAME")
    return
  end
  mark_checked("status")
  local down = {}
  for _, name in ipairs(list) do
    local ok, st = pcall(service.status, name)
    if not ok then
      found("status", "degraded", string.format("status of %s unknown: %s", name, tostring(st)))
    elseif st.running then
      log.info("%s (%s): %s", name, st.manager, st.state)
    else
      log.warn("%s (%s): %s", name, st.manager, st.state)
      down[#down + 1] = string.format("%s (%s)", name, st.state)
    end
  end
  if #down > 0 and #down == #list then
    found("status", "outage", string.format("no service is running: %s", table.concat(down, ", ")))
  elseif #down > 0 then
    found("status", "feature_down", string.format("not running: %s", table.concat(down, ", ")))
  end
end

-- What the window did to one service's error lines, for the finding:
-- the words after "N error line(s)".
local function window_text(lg)
  local window = age_text(lg.window)
  if lg.window_by == "manager" then
    return string.format(" in the last %s (%s selects them by time)", window, lg.manager)
  end
  local timed, untimed = #lg.errors - lg.untimed, lg.untimed
  local unknown = string.format("the %s window could not be applied: no timestamp in the line%s", window,
    untimed == 1 and "" or "s")
  if untimed == 0 then
    return string.format(" in the last %s; the newest is %s old", window, age_text(lg.newest_error_age))
  elseif timed == 0 then
    return string.format(" of unknown age (%s)", unknown)
  end
  return string.format(": %d in the last %s, the newest %s old; %d of unknown age (%s)", timed, window,
    age_text(lg.newest_error_age), untimed, unknown)
end

local function read_logs(name, window)
  local ok, lg = pcall(service.logs, name, { lines = 200, errors = true, since = window })
  if not ok then
    log.warn("logs of %s: %s", name, tostring(lg))
    return
  end
  log.info("%s: %d error line(s) in the last %d line(s) read%s", name, #lg.errors, #lg.lines,
    lg.filtered and " (filtered by the manager)" or "")
  if lg.older > 0 then
    log.info("%s: %d error line(s) older than %s left out (the newest of them %s old)", name, lg.older,
      age_text(window), age_text(lg.older_newest_age))
  end
  local shown = math.max(1, #lg.errors - 9)
  for i = shown, #lg.errors do print("    " .. lg.errors[i]) end
  if #lg.errors > 0 then
    found("logs", "errors", string.format("%s logged %d error line(s)%s; last: %s", name, #lg.errors,
      window_text(lg), lg.errors[#lg.errors]))
  end
end

function run_check.logs(p)
  local list = services(p)
  if #list > 0 then mark_checked("logs") end
  local window = tonumber(p.log_window) or 600
  for _, name in ipairs(list) do read_logs(name, window) end
end

local function long_queries(db, p)
  local limit = tonumber(p.long_query) or 30
  local long = pg.long_running(db, { min_seconds = limit, limit = 10 })
  if #long == 0 then
    log.info("no query has run longer than %g s", limit)
    return
  end
  for _, q in ipairs(long) do
    print(string.format("    pid %d  %s  %.0f s  %s: %s", q.pid, q.usename or "?", q.seconds, q.state or "?",
      (q.query or ""):gsub("%s+", " "):sub(1, 120)))
  end
  found("database", "degraded", string.format("%d quer%s running longer than %g s (oldest: pid %d, %.0f s)", #long,
    #long == 1 and "y" or "ies", limit, long[1].pid, long[1].seconds))
end

function run_check.database(p)
  if target.db == nil then
    log.warn("no database: add db = env(\"PROD_DB_URL\") to the target")
    return
  end
  mark_checked("database")
  local t0 = time.clock()
  local ok, db = pcall(pg.connect, nil, { connect_timeout = 5, timeout = 15 })
  local okq, err = ok, db
  if ok then okq, err = pcall(db.query, db, "select 1 as one") end
  if not okq then
    found("database", "feature_down", "database unreachable: " .. (err.message or tostring(err)))
    return
  end
  log.info("database answers (%s to connect and run select 1)", ms(time.clock() - t0))
  local c = pg.connections(db)
  local active, idle_in_tx = 0, 0
  for _, s in ipairs(c.by_state) do
    if s.state == "active" then active = active + s.n end
    if s.state:find("^idle in transaction") then idle_in_tx = idle_in_tx + s.n end
  end
  log.info("connections: %d of %d (%d active, %d idle in transaction)", c.total, c.max, active, idle_in_tx)
  if c.total >= 0.9 * c.max then
    found("database", "degraded", string.format("%d of %d database connections in use", c.total, c.max))
  end
  long_queries(db, p)
end

function run_check.redis()
  if target.redis == nil then
    log.warn("no Redis: add redis = \"redis://host:6379/0\" to the target")
    return
  end
  mark_checked("redis")
  local t0 = time.clock()
  local ok, err = pcall(function()
    local r = redis.connect(target.redis, { connect_timeout = 3, timeout = 5 })
    local pong = r:ping()
    assert(pong == "PONG", "PING answered " .. tostring(pong))
  end)
  if ok then
    log.info("Redis answers PONG (%s)", ms(time.clock() - t0))
  else
    found("redis", "degraded", "Redis PING failed: " .. (err.message or tostring(err)))
  end
end

local TITLES = {
  health = "Check the health endpoints",
  status = "Check the service status",
  logs = "Read the recent error logs (the last log_window seconds, at most 200 lines)",
  database = "Check the database: connectivity, connections, long-running queries",
  redis = "Check Redis (PING)",
}
for _, id in ipairs(CHECKS) do
  step(TITLES[id], { id = id }, function(p)
    begin_check(id)
    run_check[id](p)
  end)
end

-- The checks that did not run, in this run nor in the run it resumes
-- (--start-at past them), run now.  A check that raises here is a
-- finding, not the end of the severity step: the others still count.
local function check_again(p)
  local ran, missing, before = state.ran or {}, {}, {}
  for _, id in ipairs(CHECKS) do
    if not ran[id] then
      missing[#missing + 1] = id
    elseif not ran_here[id] then
      before[#before + 1] = id .. " at " .. ran[id]
    end
  end
  if #before > 0 then
    log.info("resumed: proposing from what the resumed run's checks found (%s); --start-at severity " ..
      "checks everything again", table.concat(before, ", "))
  end
  if #missing == 0 then return end
  log.info("resumed: checking again before proposing a severity (%s did not run in this run)",
    table.concat(missing, ", "))
  for _, id in ipairs(missing) do
    begin_check(id)
    local ok, err = pcall(run_check[id], p)
    if not ok then
      found(id, "degraded", string.format("the %s check failed: %s", id, err.message or tostring(err)))
    end
  end
end

local function nothing_checked()
  for _, id in ipairs(CHECKS) do
    if (state.checked or {})[id] then return false end
  end
  return true
end

step("Propose and confirm the severity", { id = "severity" }, function(p)
  state.severity = nil
  if state.noted == nil then note_start(p, true) end
  check_again(p)
  -- No check ran: "nothing found" would be an all-clear resting on nothing.
  if nothing_checked() then
    error(target.name == nil
      and "nothing was checked: no --target, so no health, db, redis or services to check (did you forget --target?)"
      or string.format("nothing was checked: target %s names no health, db, redis or services " ..
        "(add them: docs/targets.md; or did you mean another --target?)", target.name), 0)
  end
  state.severity = incident.confirm(findings:propose())
end)

step("Announce the severity", { id = "announce" }, function(p)
  -- Only what the severity step proposed and the operator (or --yes)
  -- confirmed, in this run or the one it resumes, is announced; never a
  -- default.
  if state.severity == nil then
    error("no severity was proposed and confirmed in this run, so none is announced: run the severity " ..
      "step (--start-at severity checks again first)", 0)
  end
  local reasons = findings:whats()
  if #reasons == 0 then reasons[1] = "the checks found nothing wrong" end
  local list = services(p)
  incident.announce("declared", {
    severity = state.severity,
    service = #list > 0 and table.concat(list, ", ") or nil,
    started = state.noted.started,
    scope = state.noted.scope,
    reasons = reasons,
  })
end)
