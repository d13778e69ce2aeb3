-- Game day for runbooks/service-restart.lua: every restart of the service
-- fails.  Rehearse it with
--   runbook run service-restart --target staging --dry-run --yes -p severity=P2 \
--     --scenario examples/scenarios/service-restart.lua
-- Expected: the restart step tries `attempts` times (2 by default), each
-- failing with the scripted error; the severity is raised from P2 to P1
-- and the "restart ... failed after 2 attempt(s)" message is shown as it
-- would be sent; the step fails.
return {
  { name = "restart fails", primitive = "exec", step = "restart", match = "restart",
    result = { code = 1, stderr = "Job for api.service failed because the control process " ..
      "exited with error code." } },
  { name = "restart fails (ssh)", primitive = "ssh", step = "restart", match = "restart",
    result = { code = 1, stderr = "Job for api.service failed because the control process " ..
      "exited with error code." } },
}
