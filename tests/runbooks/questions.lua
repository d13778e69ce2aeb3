-- Used by tests/cli/test_run.py: every kind of question, answered by
-- --yes, by an answers file, or not at all.
runbook { name = "questions", title = "Questions", severity = "P3" }

step("Approve", { id = "approve" }, function()
  confirm("Has the incident lead approved?")
end)

step("Details", { id = "details" }, function()
  local replica = prompt("Which replica?")
  local region = choose("Which region?", { "eu-west", "us-east" })
  local drain = yesno("Drain first?")
  local size = prompt("Batch size?", { default = "10" })
  log.info("replica=%s region=%s drain=%s size=%s", replica, region, tostring(drain), size)
end)

step("Checklist", { id = "checklist" }, function()
  manual("Tell the status page the restore has started")
end)
