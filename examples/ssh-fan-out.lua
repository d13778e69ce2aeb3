-- ssh-fan-out: one command on many hosts at once, host keys checked.
--   runbook run examples/ssh-fan-out.lua -p hosts=web1,web2,deploy@web3:2222
runbook { name = "ssh-fan-out", title = "Uptime on every web host", severity = "P3" }
param("hosts", { help = "comma-separated [user@]host[:port]", required = true })

step("uptime everywhere", function(p)
  local hosts = {}
  for h in p.hosts:gmatch("[^,]+") do hosts[#hosts + 1] = h end
  for _, r in ipairs(ssh.exec(hosts, "uptime", { readonly = true, check = false })) do
    log.info("%s: %s", r.host, r.ok and r.stdout:gsub("%s+$", "") or r.error)
  end
end)
