-- dry-run: what a rehearsal runs and what it only shows.
--   runbook run examples/dry-run.lua --dry-run --yes
runbook { name = "dry-run", title = "Rehearse a change", severity = "P3" }

step("Look (runs for real, readonly)", function()
  exec { "ls", "/tmp", readonly = true, quiet = true }
  log.info("dry run: %s", tostring(dry_run))
end)

step("Change (shown as 'would run' in a dry run)", { dangerous = true }, function()
  local r = exec { "touch", "/tmp/runbook-example-changed" }
  if r.dry_run then log.info("simulated: nothing was touched") end
end)
