-- secrets: values that never reach the screen or the transcript in clear.
--   runbook run examples/secrets.lua --yes -p token=s3cr3t-value
runbook { name = "secrets", title = "Secret params, prompts and values", severity = "P3" }
param("token", { help = "an API token", secret = true, default = "example-token-123" })

step("Use the secret", function(p)
  log.info("calling the API with %s", p.token)            -- shown as ***
  local url = "https://ops:" .. p.token .. "@api.example/v1"
  log.info("URL passwords are hidden too: %s", url)
  local derived = secret("Bearer " .. p.token:upper())    -- mark a derived value
  log.info("derived: %s", derived)
end)
