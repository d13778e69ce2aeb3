-- Game day for runbooks/triage.lua: the API's health endpoint answers 503
-- while everything else looks fine.  Rehearse it with
--   runbook run triage --target staging --dry-run --scenario examples/scenarios/triage.lua
-- Expected: the health step records "every health check fails", the
-- severity step proposes P0 (outage), and the announce step shows the
-- "severity P0 declared" message it would send (a dry run sends nothing).
-- The rule names no step: with --start-at severity the severity step
-- checks again, and reads the same 503.
return {
  { name = "API answers 503", primitive = "http", match = "GET ",
    result = { status = 503, body = '{"status":"unhealthy","error":"database connection refused"}' } },
}
