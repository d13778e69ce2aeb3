-- Used by tests/cli/test_interactive.py: questions on a terminal.
runbook { name = "tty", title = "Questions on a terminal", severity = "P3" }
param("target_host", { help = "the host to act on", required = true })
param("api_key", { help = "the API key", required = true, secret = true })

step("Confirm", { id = "confirm" }, function(p)
  log.info("host %s, key %s", p.target_host, p.api_key)
  confirm("Proceed with " .. p.target_host .. "?")
end)

step("Secret then plain", { id = "ask" }, function()
  local pw = prompt("Password", { secret = true })
  local name = prompt("Your name")
  log.info("password has %d chars; name is %s; password is %s", #pw, name, pw)
  local n = prompt("A number", { pattern = "%d+" })
  log.info("number %s", n)
end)
