runbook { name = "interactive", title = "Questions and a slow step", severity = "P3" }
step("Confirm", function() confirm("Proceed?") end)
step("Slow", { id = "slow" }, function() exec { "sleep", "30" } end)
step("Secret", function() local s = prompt("Token", { secret = true }); log.info("got %d chars: %s", #s, s) end)
