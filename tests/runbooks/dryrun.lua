-- Used by tests/cli/test_run.py: what --dry-run runs and what it only shows.
runbook { name = "dryrun", title = "Rehearsal", severity = "P2" }
param("dir", { help = "where the marks go", required = true })

step("Change things", { id = "change" }, function(p)
  local r = exec { "touch", p.dir .. "/exec-mark" }
  log.info("stand-in: code=%d ok=%s stdout=%q", r.code, tostring(r.ok), r.stdout)
  local s = sh("echo sh > " .. p.dir .. "/sh-mark")
  log.info("sh stand-in: code=%d", s.code)
  local ro = exec { "sh", "-c", "echo readonly-ran; touch " .. p.dir .. "/readonly-mark", readonly = true }
  log.info("readonly said %s", ro.stdout:gsub("%s+$", ""))
  if r.dry_run then log.info("branch: rehearsal") else log.info("branch: for real") end
  confirm("Continue after the change?")
end)
