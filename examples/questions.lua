-- questions: every way a runbook asks the operator.
--   runbook run examples/questions.lua                       (on a terminal)
--   runbook run examples/questions.lua --answers examples/questions.answers
runbook { name = "questions", title = "Ask, choose, prompt, check off", severity = "P3" }

step("Confirm before going on", { id = "confirm" }, function()
  confirm("Is the incident channel open?")           -- no declines the step
end)

step("Decide and pick", { id = "decide" }, function()
  if yesno("Is the primary database reachable?") then
    log.info("primary reachable: restore in place")
  else
    local replica = choose("Fail over to which replica?", { "db-2", "db-3" })
    log.info("would fail over to %s", replica)
  end
end)

step("Ask for a value", { id = "ticket" }, function()
  local ticket = prompt("Incident ticket", { pattern = "INC%-%d+", default = "INC-0000" })
  log.info("ticket %s", ticket)
end)

step("A manual item", { id = "manual" }, function()
  manual("Post the first status update on the status page")
end)
