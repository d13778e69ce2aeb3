-- demo: a tour of runbook in four steps; safe to run anywhere.
-- runbook run examples/demo.lua --yes
runbook {
  name = "demo",
  title = "A safe tour: look, ask, act, verify",
  severity = "P3",
  description = "Shows steps, params, exec, confirm, parallel and the transcript.",
}

param("greeting", { help = "what to say", default = "hello from runbook" })
param("token", { help = "an API token (shows redaction)", default = "s3cr3t-token", secret = true })

step("Look at the machine", function(p)
  local r = exec { "uname", "-sr", readonly = true }
  log.info("kernel: %s", (r.stdout:gsub("%s+$", "")))
  log.info("the token is %s (redacted on screen and in the transcript)", p.token)
end)

step("Ask before acting", function(p)
  confirm("Say '" .. p.greeting .. "' in the transcript?")
end)

step("Act: three commands at once", { timeout = 30 }, function(p)
  local results = parallel({ "0.3", "0.3", "0.3" }, function(s)
    return exec { "sleep", s }.code
  end)
  sh("echo " .. p.greeting)
  log.info("parallel exit codes: %s", table.concat(results, ","))
end)

step("Verify", function()
  local data = json.decode('{"ok": true}')
  assert(data.ok, "expected ok")
end)
