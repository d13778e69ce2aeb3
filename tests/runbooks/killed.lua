-- Used by tests/cli/test_transcript.py: a run that is SIGKILLed while its
-- second step waits (a timer, so no child process outlives the test).
runbook { name = "killed", title = "Killed mid-run", severity = "P3" }
step("Before", { id = "before" }, function() log.info("before the wait") end)
step("Long wait", { id = "long" }, function()
  log.info("waiting now")
  wait(30)
end)
