-- Game day for runbooks/tls-renewal.lua: the endpoint's certificate has
-- already expired, and certbot's rehearsal fails its ACME challenge.
--   runbook run tls-renewal --target staging --dry-run --scenario examples/scenarios/tls-renewal.lua
-- Expected: check-expiry reports the endpoint EXPIRED and declares P1
-- ("severity declared: P1 ..."); renew-dry-run fails with the challenge
-- error, so the real renewal is never attempted (the operator retries
-- once the firewall or DNS is fixed, or aborts).
return {
  { name = "certificate already expired", primitive = "http", step = "check-expiry",
    match = "GET https://",
    result = { status = 200, body = "", tls = { subject = "CN=app.example", issuer = "CN=R3",
      expires_in_days = -0.5, verified = false } } },
  { name = "ACME challenge fails", primitive = "exec", step = "renew-dry-run", match = "%-%-dry%-run",
    result = { code = 1, stderr = "Challenge failed for domain app.example: Timeout during " ..
      "connect (likely firewall problem)" } },
}
