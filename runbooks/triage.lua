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
-- to add.  The db URL's role needs pg_monitor (or to own the sessions) to
-- see other roles' queries in pg_stat_activity.
local health = require("health")
local incident = require("incident")
local service = require("service")
local loop = require("runbook.loop")     -- loop.now(): timings

runbook {
  name = "triage",
  title = "Triage: the first five minutes of an incident",
  severity = "P1",
  description = "Notes the start time and scope; checks health endpoints, service status, " ..
    "the last 200 error log lines, database connectivity, connections and long-running " ..
    "queries, and Redis; proposes a severity (P0-P3) for the operator to confirm or " ..
    "change, and announces it through notify.  Changes nothing but the announcement.",
}

param("scope", { help = "what is affected, as reported (asked when not given)" })
param("started", { help = "when the problem started, as reported (default: now)" })
param("service", { help = "look at this service only (default: the target's services)" })
param("long_query", { help = "seconds after which a running query counts as long-running", default = 30 })
param("slow_after", { help = "seconds over which a response counts as slow (P1)" })

-- What the steps found, for the severity step.
local findings = {}
local noted = {}

local function found(kind, what, source)
  findings[#findings + 1] = { kind = kind, what = what, source = source }
  log.warn("finding (%s, %s): %s", kind, incident.KINDS[kind], what)
end

local function services(p)
  if p.service then return { p.service } end
  return service.list()
end

local function ms(seconds) return health.ms(seconds) end

step("Note the start time and scope", { id = "start" }, function(p)
  noted.triage_started = os.date("!%Y-%m-%d %H:%M:%S UTC")
  noted.started = p.started or noted.triage_started
  noted.scope = p.scope or prompt("What is affected (scope)?", { default = "not yet known" })
  log.info("triage started %s on target %s", noted.triage_started, target.name or "(none)")
  log.info("problem started: %s", noted.started)
  log.info("scope: %s", noted.scope)
end)

step("Check the health endpoints", { id = "health" }, function(p)
  if target.health == nil then
    log.warn("no health endpoints: add health = { \"https://.../health\" } to the target")
    return
  end
  local results = health.check(target.health, { slow_after = tonumber(p.slow_after) })
  log.info(health.summary(results).text)
  for _, f in ipairs(health.findings(results)) do found(f.kind, f.what, f.source) end
end)

step("Check the service status", { id = "status" }, function(p)
  local list = services(p)
  if #list == 0 then
    log.warn("no services: add services = { \"api\" } and manager = ... to the target, or pass -p service=NAME")
    return
  end
  local down = {}
  for _, name in ipairs(list) do
    local ok, st = pcall(service.status, name)
    if not ok then
      found("degraded", string.format("status of %s unknown: %s", name, tostring(st)), "status")
    elseif st.running then
      log.info("%s (%s): %s", name, st.manager, st.state)
    else
      log.warn("%s (%s): %s", name, st.manager, st.state)
      down[#down + 1] = string.format("%s (%s)", name, st.state)
    end
  end
  if #down > 0 and #down == #list then
    found("outage", string.format("no service is running: %s", table.concat(down, ", ")), "status")
  elseif #down > 0 then
    found("feature_down", string.format("not running: %s", table.concat(down, ", ")), "status")
  end
end)

step("Read the last 200 lines of error logs", { id = "logs" }, function(p)
  for _, name in ipairs(services(p)) do
    local ok, lg = pcall(service.logs, name, { lines = 200, errors = true })
    if not ok then
      log.warn("logs of %s: %s", name, tostring(lg))
    else
      local shown = math.max(1, #lg.errors - 9)
      log.info("%s: %d error line(s) in the last %d line(s) read%s", name, #lg.errors, #lg.lines,
        lg.filtered and " (filtered by the manager)" or "")
      for i = shown, #lg.errors do print("    " .. lg.errors[i]) end
      if #lg.errors > 0 then
        found("errors", string.format("%s logged %d error line(s) recently; last: %s", name, #lg.errors,
          lg.errors[#lg.errors]), "logs")
      end
    end
  end
end)

step("Check the database: connectivity, connections, long-running queries", { id = "database" }, function(p)
  if target.db == nil then
    log.warn("no database: add db = env(\"PROD_DB_URL\") to the target")
    return
  end
  local t0 = loop.now()
  local ok, db = pcall(sql.connect, target.db, { connect_timeout = 5, timeout = 15, quiet = true })
  local okq, err = ok, db
  if ok then okq, err = pcall(db.query, db, "select 1 as one") end
  if not okq then
    found("feature_down", "database unreachable: " .. tostring(err):gsub("^[^:]*:%d+: ", ""), "database")
    return
  end
  log.info("database answers (%s to connect and run select 1)", ms(loop.now() - t0))
  local c = db:query([[
    select count(*)::int as total,
           count(*) filter (where state = 'active')::int as active,
           count(*) filter (where state like 'idle in transaction%')::int as idle_in_tx,
           current_setting('max_connections')::int as max
      from pg_stat_activity where backend_type = 'client backend']])[1]
  log.info("connections: %d of %d (%d active, %d idle in transaction)", c.total, c.max, c.active, c.idle_in_tx)
  if c.total >= 0.9 * c.max then
    found("degraded", string.format("%d of %d database connections in use", c.total, c.max), "database")
  end
  local limit = tonumber(p.long_query) or 30
  local long = db:query([[
    select pid, usename as "user", state,
           extract(epoch from now() - query_start)::float8 as seconds,
           left(regexp_replace(query, '\s+', ' ', 'g'), 120) as query
      from pg_stat_activity
     where state <> 'idle' and pid <> pg_backend_pid() and backend_type = 'client backend'
       and query_start < now() - make_interval(secs => $1::float8)
     order by query_start limit 10]], limit)
  if #long == 0 then
    log.info("no query has run longer than %s s", tostring(limit))
    return
  end
  for _, q in ipairs(long) do
    print(string.format("    pid %d  %s  %.0f s  %s: %s", q.pid, q.user or "?", q.seconds, q.state or "?", q.query or ""))
  end
  found("degraded", string.format("%d quer%s running longer than %s s (oldest: pid %d, %.0f s)", #long,
    #long == 1 and "y" or "ies", tostring(limit), long[1].pid, long[1].seconds), "database")
end)

step("Check Redis (PING)", { id = "redis" }, function()
  if target.redis == nil then
    log.warn("no Redis: add redis = \"redis://host:6379/0\" to the target")
    return
  end
  local t0 = loop.now()
  local ok, err = pcall(function()
    local r = redis.connect(target.redis, { connect_timeout = 3, timeout = 5 })
    local pong = r:ping()
    assert(pong == "PONG", "PING answered " .. tostring(pong))
  end)
  if ok then
    log.info("Redis answers PONG (%s)", ms(loop.now() - t0))
  else
    found("degraded", "Redis PING failed: " .. tostring(err):gsub("^[^:]*:%d+: ", ""), "redis")
  end
end)

step("Propose and confirm the severity", { id = "severity" }, function()
  local proposed, reasons = incident.propose(findings)
  noted.proposed, noted.reasons = proposed, reasons
  noted.severity = incident.confirm(proposed, reasons)
end)

step("Announce the severity", { id = "announce" }, function(p)
  local severity = noted.severity or "P2"
  local reasons = {}
  for _, f in ipairs(findings) do reasons[#reasons + 1] = f.what end
  if #reasons == 0 then reasons[1] = "the checks found nothing wrong" end
  local list = services(p)
  incident.announce("declared", {
    severity = severity,
    service = #list > 0 and table.concat(list, ", ") or nil,
    started = noted.started,
    scope = noted.scope,
    reasons = reasons,
  })
end)
