-- sql-report: read-only PostgreSQL diagnostics with bound parameters.
--   runbook run examples/sql-report.lua -p db=postgresql://user:pw@host/db
runbook { name = "sql-report", title = "Connections and slow queries", severity = "P2" }
param("db", { help = "database URL", required = true, secret = true })
param("slow", { help = "seconds after which a query is slow", default = "30" })

step("Connections by state", function(p)
  local db = sql.connect(p.db)
  for _, r in ipairs(db:query("select coalesce(state, 'background') as state, count(*) as n " ..
      "from pg_stat_activity group by 1 order by 2 desc")) do
    log.info("%-20s %d", r.state, r.n)
  end
end)

step("Queries running longer than the threshold", function(p)
  local rows = sql.connect(p.db):query(
    "select pid, now() - query_start as age, left(query, 80) as query from pg_stat_activity " ..
    "where state = 'active' and now() - query_start > make_interval(secs => $1)", tonumber(p.slow))
  log.info("%d slow queries", #rows)
end)
