-- Used by tests/cli/test_transcript.py: every way a secret enters a run.
-- Secret values: the param `token`, the prompt "Passphrase", the value of
-- $RB_TEST_VAULT_KEY passed through secret(), and a password in a URL.
runbook { name = "secrets", title = "Secrets stay secret", severity = "P3" }
param("token", { help = "API token", required = true, secret = true })

step("Use the secrets", { id = "use" }, function(p)
  log.info("token is %s", p.token)
  exec { "echo", "token:" .. p.token }
  local key = secret(env("RB_TEST_VAULT_KEY", "unset"))
  log.warn("key is %s", key)
  sh("echo key=" .. key .. " >&2")
  exec { "echo", "postgres://admin:Pa55-in-url-77@db.example:5432/app" }
  local phrase = prompt("Passphrase", { secret = true })
  log.info("passphrase is %s", phrase)
  error("failing with " .. p.token .. " and " .. phrase .. " and " .. key)
end)
