-- bench/encode.lua: what encoding one `call` event costs (transcript.encode:
-- the walk, redaction, escaping; no hashing or write).  Three events: a
-- typical exec call with a short output, the same with 4 KB of status
-- text, and one with a 60 KB output (a big `env` or JSON document) that
-- holds nothing to hide.  Medians of many rounds, in microseconds.
--   RUNBOOK_TEST_INTERNALS=1 build/runbook run bench/encode.lua --yes [-p n=20000]
runbook { name = "bench-encode", title = "transcript.encode of call events", severity = "P3" }
param("n", { help = "timed rounds per event", default = "20000" })

local function status_text(bytes)
  local lines, size, i = {}, 0, 0
  while size < bytes do
    i = i + 1
    local l = string.format("Dec 01 20:%02d:%02d web-%d nginx[%d]: GET /api/v1/orders/%d HTTP/1.1 200 " ..
      "upstream=10.0.0.%d:8080 request_id=6f1c2a9e-%04d-4b7e-9d2f-1a2b3c4d5e6f", i % 60, i % 60, i % 4,
      1000 + i, i, i % 255, i % 10000)
    lines[#lines + 1] = l
    size = size + #l + 1
  end
  return table.concat(lines, "\n") .. "\n"
end

local function event(stdout)
  return { primitive = "exec", outcome = "ok", step = "check-nginx", duration = 0.0123,
    args = { readonly = true, timeout = 60, argv = { "systemctl", "status", "nginx.service", "--no-pager" } },
    result = { code = 0, stdout = stdout, stderr = "" } }
end

step("encode call events", function(p)
  local encode = require("runbook.transcript").encode
  local now = require("runbook.loop").now
  local n = math.tointeger(tonumber(p.n)) or error("n must be an integer")
  local cases = {
    { "short output (70 B)", event("Active: active (running) since Tue 2026-12-01 20:58:52 UTC; 3h ago\n") },
    { "status output (4 KB)", event(status_text(4096)) },
    { "big output (60 KB)", event(status_text(60 * 1024)) },
  }
  for _, c in ipairs(cases) do
    local rounds = c[1]:find("60 KB") and n // 20 or n
    for _ = 1, 200 do encode(c[2]) end
    local t = {}
    for i = 1, rounds do
      local t0 = now()
      encode(c[2])
      t[i] = now() - t0
    end
    table.sort(t)
    print(string.format("@%s: %.2f us (median of %d)", c[1], t[(rounds + 1) // 2] * 1e6, rounds))
  end
end)
