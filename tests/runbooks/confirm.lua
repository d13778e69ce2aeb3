-- Used by tests/cli/test_interactive.py: one confirmation, then a step
-- that shows whether the run went on.
runbook { name = "confirm", title = "A confirmation", severity = "P3" }
step("Ask first", { id = "ask" }, function()
  confirm("Restart the service?")
  log.info("confirmed")
end)
step("After", { id = "after" }, function() log.info("after ran") end)
