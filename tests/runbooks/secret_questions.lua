-- Used by tests/e2e/test_secret_paths.py: secret answers that fail their
-- check, and a secret param with choices.
runbook { name = "secret-questions", title = "Rejected secret answers", severity = "P3" }
param("level", { help = "a secret choice", secret = true, required = true, choices = { "alpha-1", "beta-2" } })
param("dir", { help = "where to write what was answered", default = "." })

step("Ask for a token", { id = "ask" }, function(p)
  local token = prompt("API token", { secret = true, pattern = "tok%-%d+" })
  file.write(p.dir .. "/token.got", token)
end)
