-- processes: local commands with exec (argv, no shell) and sh.
runbook { name = "processes", title = "Run local commands", severity = "P3" }

step("Read-only commands run even in a dry run", function()
  local r = exec { "uname", "-s", readonly = true }
  log.info("kernel: %s", (r.stdout:gsub("%s+$", "")))
end)

step("A non-zero exit is an error unless check = false", function()
  local r = exec { "sh", "-c", "exit 3", check = false, readonly = true }
  log.info("exit code %d, ok = %s", r.code, tostring(r.ok))
end)

step("stdin, env and a timeout", function()
  local r = exec { "tr", "a-z", "A-Z", stdin = "shout\n", timeout = 5, readonly = true }
  log.info("tr said %s", (r.stdout:gsub("%s+$", "")))
  sh("echo \"deploying $VERSION\"", { env = { VERSION = "1.2.3" } })
end)

step("A timeout ends the whole process group", function()
  local ok, err = pcall(exec, { "sh", "-c", "sleep 30 & sleep 30", timeout = 0.5, readonly = true })
  log.info("as expected: %s", ok and "no error?" or err)
end)
