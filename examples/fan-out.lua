-- fan-out: parallel runs many waits at once from one thread.
runbook { name = "fan-out", title = "Check five things at once", severity = "P3" }
param("n", { help = "how many checks", default = "5" })

step("Five one-second checks take one second", function(p)
  local items = {}
  for i = 1, tonumber(p.n) do items[i] = i end
  local t0 = os.time()
  local results = parallel(items, function(i)
    exec { "sleep", "1", readonly = true, quiet = true }
    return "check " .. i .. " ok"
  end, { limit = 10 })
  log.info("%s (about %d s)", table.concat(results, ", "), os.time() - t0)
end)
