-- http-check: health endpoints with expectations and timings.
--   runbook run examples/http-check.lua -p url=https://example.org/health
runbook { name = "http-check", title = "Check an HTTP endpoint", severity = "P2" }
param("url", { help = "the endpoint", required = true })

step("GET it and expect 200", function(p)
  local r = http.get(p.url, { expect = 200, timeout = 5 })
  log.info("%d in %.0f ms", r.status, r.time * 1000)
  if r.tls then log.info("certificate expires in %d days", r.tls.expires_in_days) end
end)
