-- The smallest useful runbook: one step that does nothing, for start-up time.
runbook { name = "trivial", title = "One empty step", severity = "P3" }
step("Nothing", function() end)
