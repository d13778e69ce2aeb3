-- bench/sql.lua: the per-call cost of db:query on one open connection, for
-- bench/sql.sh.  Each call is timed with runbook.loop.now() around it, so
-- the figure includes what a runbook pays per call: the event loop round,
-- the type mapping, the `call` event written to the transcript and, unless
-- quiet, the echoed statement.
runbook { name = "bench-sql", title = "db:query('SELECT 1') in a loop", severity = "P3" }
param("db", { help = "database URL", required = true })
param("n", { help = "timed calls", default = "2000" })
param("quiet", { help = "do not echo each statement", default = "yes", choices = { "yes", "no" } })

step("SELECT 1 in a loop", function(p)
  local now = require("runbook.loop").now
  local n = math.tointeger(tonumber(p.n)) or error("n must be an integer")
  local db = sql.connect(p.db, { quiet = p.quiet == "yes" })
  for _ = 1, 200 do db:query("SELECT 1") end          -- warm up
  local t = {}
  for i = 1, n do
    local t0 = now()
    local rows = db:query("SELECT 1")
    t[i] = now() - t0
    assert(rows[1]["?column?"] == 1)
  end
  table.sort(t)
  print(string.format("@median_us=%.2f", t[(n + 1) // 2] * 1e6))
end)
