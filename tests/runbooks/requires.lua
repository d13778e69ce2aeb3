-- Used by tests/cli/test_state.py: step requirements.  "ticket" is
-- provided before each attempt of every step that requires it; step
-- "flaky" fails on its first attempt.
runbook { name = "requires", title = "Step requirements", severity = "P3" }
param("dir", { help = "where the marks go", required = true })

requirement("ticket", function(p)
  exec { "sh", "-c", "echo provided >> " .. p.dir .. "/provided" }
end)

step("Plain", { id = "plain" }, function() print("@ran=\"plain\"") end)

step("One", { id = "one", requires = { "ticket" } }, function() print("@ran=\"one\"") end)

step("Flaky", { id = "flaky", requires = { "ticket" } }, function()
  state.tries = (state.tries or 0) + 1
  print("@ran=\"flaky\"")
  if state.tries == 1 then error("first attempt fails", 0) end
end)
