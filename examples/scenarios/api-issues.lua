-- Game day for runbooks/api-issues.lua: the database pool is exhausted, so
-- the health endpoints fail, and the restart that should fix it fails too.
--   runbook run api-issues --target staging --dry-run --yes --scenario examples/scenarios/api-issues.lua
-- Expected: the detailed-health step reports 25 requests waiting for a
-- database connection (pool 10/10 in use), the fix step proposes
-- "restart" (--yes takes the proposal), and the restart step fails with
-- the scripted "Address already in use" error; the operator then retries,
-- skips or aborts.
return {
  { name = "pool exhausted", primitive = "http", match = "/health/detailed",
    result = { status = 503, body = '{"status":"degraded","db":{"status":"degraded",' ..
      '"pool":{"size":10,"in_use":10,"waiting":25}},"redis":{"status":"ok"}}' } },
  { name = "API answers 503", primitive = "http", match = "/health",
    result = { status = 503, body = '{"status":"unhealthy","error":"timeout acquiring a connection"}' } },
  { name = "restart fails", primitive = "exec", step = "restart", match = "restart",
    result = { code = 1, stderr = "api: bind 0.0.0.0:8080: Address already in use" } },
}
