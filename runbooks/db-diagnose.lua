-- db-diagnose: what is PostgreSQL doing right now, and end the backend that is in the way.
-- Run it with `runbook run db-diagnose --target prod` (or -p db=URL);
-- rehearse it with `--dry-run`: every query here only reads, and the one
-- write (pg_terminate_backend) is shown, not run.

runbook {
  name = "db-diagnose",
  title = "Diagnose PostgreSQL: connections, long queries, blocking locks, sizes",
  severity = "P2",
  description = "Read-only look at a database under trouble: connections by state against " ..
    "max_connections, queries running for long, who blocks whom (pg_blocking_pids), database " ..
    "and table sizes.  Then, with confirmation, terminates one backend the operator chooses.",
}

param("db", { help = "database URL (default: the target's db)", secret = true })
param("min_seconds", { help = "a query running longer than this is listed as long-running",
  default = "60" })
param("pid", { help = "the backend to terminate; without it the operator picks one from the list" })

local pg = require("pg")

-- Findings, shared by the steps: a run started at a later step fills them in.
local found = { pairs = nil, long = nil }

local function db_url(p)
  local url = p.db or target.db
  if url == nil then
    error("no database: pass -p db=URL, or set db = env(\"...\") in the target (docs/targets.md)", 0)
  end
  return url
end

local function short(q, n)
  q = (q or ""):gsub("%s+", " ")
  n = n or 80
  if #q > n then q = q:sub(1, n - 3) .. "..." end
  return q
end

local function secs(s)
  s = s or 0
  if s < 120 then return string.format("%.0fs", s) end
  if s < 7200 then return string.format("%dm%02ds", s // 60, math.floor(s % 60)) end
  return string.format("%dh%02dm", s // 3600, math.floor(s % 3600) // 60)
end

local function min_seconds(p)
  local n = tonumber(p.min_seconds)
  if n == nil or n < 0 then error("min_seconds must be a number of seconds, got " .. tostring(p.min_seconds), 0) end
  return n
end

step("Connections by state", { id = "connections" }, function(p)
  local db = pg.connect(db_url(p))
  local c = pg.connections(db)
  log.info("%s: %d client connections of max_connections %d (%.0f%%)", pg.server(db_url(p)),
    c.total, c.max, 100 * c.total / c.max)
  for _, s in ipairs(c.by_state) do print(string.format("    %-30s %5d", s.state, s.n)) end
  for _, r in ipairs(c.by_database) do
    print(string.format("    %-20s %-28s %5d", r.datname, r.state, r.n))
  end
  if c.total >= 0.9 * c.max then
    log.warn("connections at %d of %d: new clients will soon be refused (look for a pool leak, " ..
      "idle in transaction sessions below)", c.total, c.max)
  end
  local idle_tx = 0
  for _, s in ipairs(c.by_state) do
    if s.state:match("^idle in transaction") then idle_tx = idle_tx + s.n end
  end
  if idle_tx > 0 then
    log.warn("%d session(s) idle in transaction: they hold locks and block vacuum", idle_tx)
  end
end)

step("Long-running queries", { id = "long-running" }, function(p)
  local db = pg.connect(db_url(p))
  local rows = pg.long_running(db, { min_seconds = min_seconds(p) })
  found.long = rows
  if #rows == 0 then
    log.info("no query or transaction running longer than %ss", p.min_seconds)
    return
  end
  log.warn("%d backend(s) busy for longer than %ss:", #rows, p.min_seconds)
  for _, r in ipairs(rows) do
    print(string.format("    pid %-7d %-10s %-8s %-20s %-14s %s", r.pid, r.usename or "?",
      secs(r.seconds), r.state or "?", r.wait or "-", short(r.query)))
  end
end)

step("Blocking locks", { id = "locks" }, function(p)
  local db = pg.connect(db_url(p))
  local pairs_ = pg.blocking(db)
  found.pairs = pairs_
  if #pairs_ == 0 then
    log.info("no backend is waiting on a lock another one holds")
    return
  end
  log.warn("%d backend(s) wait on locks held by others:", #pairs_)
  for _, r in ipairs(pairs_) do
    print(string.format("    pid %d (%s, waiting %s): %s", r.blocked_pid, r.blocked_user or "?",
      secs(r.blocked_seconds), short(r.blocked_query, 60)))
    print(string.format("      blocked by pid %d (%s, %s for %s): %s", r.blocking_pid,
      r.blocking_user or "?", r.blocking_state or "?", secs(r.blocking_seconds), short(r.blocking_query, 60)))
  end
  local roots = pg.root_blockers(pairs_)
  local list = {}
  for _, pid in ipairs(roots) do list[#list + 1] = tostring(pid) end
  log.warn("root blocker(s), waiting on nobody: pid %s; ending them frees the others",
    table.concat(list, ", "))
end)

step("Database and table sizes", { id = "sizes" }, function(p)
  local db = pg.connect(db_url(p))
  for _, r in ipairs(pg.database_sizes(db)) do
    print(string.format("    %-30s %12s", r.datname, r.size))
  end
  log.info("largest tables of %s:", pg.server(db_url(p)))
  for _, r in ipairs(pg.table_sizes(db, { limit = 10 })) do
    if r.locked_by then
      print(string.format("    %-40s size unknown: locked by %s %s  ~%d rows", r.relation,
        r.locked_by:find(",", 1, true) and "pids" or "pid", r.locked_by, r.rows_estimate))
    elseif r.size == nil then
      print(string.format("    %-40s size unknown: a lock came and went while measuring", r.relation))
    else
      print(string.format("    %-40s %12s  ~%d rows", r.relation, r.size, r.rows_estimate))
    end
  end
end)

-- Not marked dangerous: most runs end nothing, and the one destructive
-- call is behind its own confirmation naming the pid.
step("Terminate a backend", { id = "terminate" }, function(p)
  local db = pg.connect(db_url(p))
  local candidates, seen = {}, {}
  local function add(pid, why)
    if pid and not seen[pid] then
      seen[pid] = true
      candidates[#candidates + 1] = { pid = pid, why = why }
    end
  end
  for _, pid in ipairs(pg.root_blockers(found.pairs or pg.blocking(db))) do add(pid, "root blocker") end
  for _, r in ipairs(found.long or pg.long_running(db, { min_seconds = min_seconds(p) })) do
    add(r.pid, "long-running")
  end
  local pid = p.pid
  if pid == nil then
    if #candidates == 0 then
      log.info("nothing to terminate: no blocker and no long-running query")
      return
    end
    -- read again here: the steps above ran a while ago, and the age the
    -- operator decides on is the one at this question
    log.info("candidates:")
    for _, c in ipairs(candidates) do
      local b = pg.backend(db, c.pid)
      print(string.format("    pid %-7d %-22s %s", c.pid, b and (c.why .. " " .. secs(b.seconds)) or c.why,
        b and string.format("%s, %s: %s", b.usename or "?", b.state or "?", short(b.query, 60)) or "(gone)"))
    end
    pid = prompt("Backend to terminate (a pid from the list, or none)",
      { default = "none", pattern = "%w+" })
    if pid == "none" then
      log.info("nothing terminated")
      return
    end
  end
  local n = math.tointeger(tonumber(pid))
  if n == nil then error(string.format("%q is not a backend pid", tostring(pid)), 0) end
  local b = pg.backend(db, n)
  if b == nil then
    error(string.format("backend %d is not running on %s (it may have ended already)", n,
      pg.server(db_url(p))), 0)
  end
  log.info("backend %d: user %s, application %q, %s for %s: %s", n, b.usename or "?",
    b.application_name or "", b.state or "?", secs(b.seconds), short(b.query, 120))
  confirm(string.format("Terminate backend %d?", n))
  local gone, how = pg.terminate(db, n, { wait = 5 })
  if gone then
    log.info("backend %d terminated", n)
  elseif how == "simulated" then
    log.info("dry run: backend %d left running", n)
  else
    error(string.format("backend %d is still there 5 s after pg_terminate_backend " ..
      "(check the role's right to signal it: pg_signal_backend)", n), 0)
  end
end)
