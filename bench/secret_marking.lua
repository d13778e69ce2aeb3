-- bench/secret_marking.lua: what marking a big secret output costs, end to
-- end: exec{"cat", FILE, secret = true, readonly = true} of a 1 MB,
-- 20,000-line file (every line is marked, so the redactor then holds
-- some 20,000 secrets), then 2,000 log events, each shown and recorded
-- through the redactor.  Prints the time of the call and of the events,
-- and how many lines record.secret marked one by one.
--   RUNBOOK_TEST_INTERNALS=1 build/runbook run bench/secret_marking.lua --yes >/dev/null 2>&1;
--   see the transcript, or the same run piped to grep '^@'
-- -p max_lines=N overrides record.MAX_SECRET_LINES for the run (to compare caps).
runbook { name = "bench-secret-marking", title = "marking a 1 MB secret output, then logging", severity = "P3" }
param("lines", { help = "lines in the secret file", default = "20000" })
param("events", { help = "log events after the call", default = "2000" })
param("max_lines", { help = "record.MAX_SECRET_LINES for this run (default: as shipped)", default = "" })

-- 50-byte lines like a .pgpass or credentials dump: most start alike.
local function write_file(path, lines)
  local f = assert(io.open(path, "w"))
  for i = 1, lines do
    f:write(string.format("db-%03d.prod:5432:orders:svc_%05d:Xk9%012x\n", i % 400, i,
      (i * 2654435761) % (1 << 48)))
  end
  f:close()
end

step("mark a secret file, then log", function(p)
  local record = require("runbook.record")
  local now = require("runbook.loop").now
  local lines, events = math.tointeger(tonumber(p.lines)), math.tointeger(tonumber(p.events))
  if p.max_lines ~= "" then record.MAX_SECRET_LINES = math.tointeger(tonumber(p.max_lines)) end
  local path = os.tmpname()
  write_file(path, lines)
  local f = assert(io.open(path)); local size = f:seek("end"); f:close()
  local t0 = now()
  local r = exec { "cat", path, secret = true, readonly = true }
  local t1 = now()
  for i = 1, events do
    log.info(string.format("event %d: replica db-%03d.prod:5432 lag 0.%03d s, %d connections, pool ok", i,
      i % 400, i % 1000, 40 + i % 60))
  end
  local t2 = now()
  os.remove(path)
  print(string.format("@file %d bytes, %d lines; cap %s lines", size, lines, tostring(record.MAX_SECRET_LINES)))
  print(string.format("@exec cat, a secret call: %.3f s (%d bytes read)", t1 - t0, #r.stdout))
  print(string.format("@%d log events: %.3f s (%.1f us each)", events, t2 - t1, (t2 - t1) / events * 1e6))
end)
