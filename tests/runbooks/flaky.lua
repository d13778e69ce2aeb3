-- Used by tests/cli: a step that fails on its first `fails` attempts (the
-- counter lives across retries), with an undo; then a last step.
runbook { name = "flaky", title = "Retry, skip, abort, undo", severity = "P3" }
param("fails", { help = "attempts that fail before one succeeds", default = "1" })

local attempts = 0

step("Flaky step", {
  id = "flaky",
  undo = function() log.info("undo of flaky ran") end,
}, function(p)
  attempts = attempts + 1
  log.info("attempt %d", attempts)
  if attempts <= tonumber(p.fails) then
    error(string.format("flaky failure %d", attempts))
  end
end)

step("Last step", { id = "last" }, function()
  log.info("last step ran")
end)
