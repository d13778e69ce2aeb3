-- Game day for db-diagnose: a session left idle in transaction holds a row
-- lock for two hours, writers queue behind it and the connections run out.
-- Rehearse it with
--   runbook run db-diagnose --dry-run --scenario examples/scenarios/db-diagnose.lua -p db=URL
-- The connections step warns that the server is nearly full and that
-- sessions sit idle in transaction; the locks step shows who waits on whom
-- and names pid 4141 as the root blocker; the terminate step offers it
-- (a dry run only shows the pg_terminate_backend).
return {
  { name = "connections nearly exhausted", primitive = "sql.query", match = "coalesce%(state",
    result = { rows = {
      { state = "active", datname = "app", n = 51 },
      { state = "idle in transaction", datname = "app", n = 4 },
    } } },
  { name = "writers behind an idle transaction", primitive = "sql.query", match = "blocked_pid",
    result = { rows = {
      { blocked_pid = 4242, blocked_user = "app", blocked_query = "update accounts set balance = balance - 10 where id = 7",
        blocked_seconds = 95, blocking_pid = 4141, blocking_user = "app", blocking_state = "idle in transaction",
        blocking_query = "update accounts set flagged = true where id = 7", blocking_seconds = 7260 },
      { blocked_pid = 4343, blocked_user = "app", blocked_query = "update accounts set balance = balance + 10 where id = 7",
        blocked_seconds = 60, blocking_pid = 4242, blocking_user = "app", blocking_state = "active",
        blocking_query = "update accounts set balance = balance - 10 where id = 7", blocking_seconds = 95 },
    } } },
}
