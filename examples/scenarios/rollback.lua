-- Game day for runbooks/rollback.lua: the rollback goes through, but the
-- service does not come back healthy.  Rehearse it with
--   runbook run rollback --target staging --dry-run --scenario examples/scenarios/rollback.lua
-- Expected: the verify-health step keeps getting 503, declares P0
-- ("severity declared: P0 ...") and fails; the operator then decides
-- (retry, skip, or undo the rollback with u at the rollback step's prompt).
return {
  { name = "still unhealthy after the rollback", primitive = "http", step = "verify-health",
    match = "GET ", result = { status = 503, body = '{"status":"down","error":"db pool exhausted"}' } },
}
