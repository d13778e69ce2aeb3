-- polling: wait for a condition with poll, and a plain wait.
runbook { name = "polling", title = "Wait until a file appears", severity = "P3" }
param("file", { help = "the file to wait for", default = "/tmp/runbook-example-ready" })

step("Start something that finishes later", function(p)
  sh("(sleep 1; touch " .. p.file .. ") &")
end)

step("Poll until it is done", { timeout = 30 }, function(p)
  if dry_run then   -- the command above was only shown: nothing will appear
    log.info("dry run: not waiting for %s", p.file)
    return
  end
  poll(function() return file.stat(p.file) ~= nil end,
       { every = 0.2, timeout = 10, what = p.file .. " to exist" })
  log.info("%s is there", p.file)
  file.remove(p.file)
  wait(0.1)
end)
