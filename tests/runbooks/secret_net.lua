-- Used by tests/e2e/test_secret_paths.py: secrets read with secret = true
-- from real servers (HTTP, Redis, PostgreSQL, sshd).  -p only=ID runs one
-- step; what a step got is written to DIR/<name>.got, so the test can tell
-- the runbook had the value.
runbook { name = "secret-net", title = "Secrets read from servers", severity = "P3" }
param("dir", { help = "the directory holding the planted files", required = true })
param("only", { help = "run only the step with this id" })
param("http", { help = "the test server's /echo URL" })
param("cacert", { help = "the test server's CA" })
param("redis", { help = "Redis URL" })
param("db", { help = "PostgreSQL URL" })
param("ssh_port", { help = "sshd port" })
param("ssh_key", { help = "client key" })
param("known_hosts", { help = "known_hosts file" })

local planted = require("lib.planted")
local wanted, save = planted.wanted, planted.save

step("HTTP", { id = "http" }, function(p)
  if not wanted(p, "http") then return end
  -- the server echoes the body back: the reply carries the planted value
  local r = http.post(p.http, { body = planted.read(p, "http.txt"), cacert = p.cacert, secret = true })
  local got = r:json().body
  log.info("echoed: %s", got)
  log.info("body: %s", r.body)
  save(p, "http", got)
  local ok, err = pcall(http.post, p.http, { body = planted.read(p, "http.txt"), cacert = p.cacert,
    secret = true, expect = 201 })
  log.warn("expect 201: %s %s", tostring(ok), tostring(err))
end)

step("Redis", { id = "redis" }, function(p)
  if not wanted(p, "redis") then return end
  local r = redis.connect(p.redis)
  local pw = r:call { "GET", "vault:db", secret = true }
  log.info("redis GET: %s", pw)
  save(p, "redis", pw)
  local h = r:call { "HGETALL", "vault:h", secret = true }
  for i, v in ipairs(h) do log.info("hash %d: %s", i, v) end
  save(p, "redis-hash", h[2])
end)

step("PostgreSQL", { id = "sql" }, function(p)
  if not wanted(p, "sql") then return end
  local db = sql.connect(p.db)
  local row = db:query { "select pw, note from creds where name = $1", "api", secret = true }[1]
  log.info("sql pw: %s, note: %s", row.pw, row.note)
  save(p, "sql", row.pw)
  db:query { "select leak_notice()", secret = true }
  local n = db:exec { "do $$ begin perform leak_notice(); end $$", secret = true }
  log.info("exec gave %s", tostring(n))
end)

step("SSH", { id = "ssh" }, function(p)
  if not wanted(p, "ssh") then return end
  local opts = { host = "127.0.0.1", port = tonumber(p.ssh_port), key = p.ssh_key,
    known_hosts = p.known_hosts }
  local s = ssh.connect(opts)
  local r = s:exec("cat " .. p.dir .. "/ssh.txt", { secret = true, readonly = true })
  log.info("ssh read: %s", r.stdout)
  save(p, "ssh", r.stdout)
  local ok, err = pcall(s.exec, s, "cat " .. p.dir .. "/ssh.txt; exit 3", { secret = true, readonly = true })
  log.warn("failed as expected: %s %s", tostring(ok), tostring(err))
  s:close()
  local fan = {}
  for k, v in pairs(opts) do fan[k] = v end
  fan.host = nil
  fan.secret, fan.readonly, fan.check = true, true, false
  local rs = ssh.exec({ "127.0.0.1" }, "cat " .. p.dir .. "/ssh-fan.txt; exit 4", fan)
  log.warn("fan-out: %s", tostring(rs[1].error))
  save(p, "ssh-fan", rs[1].stdout)
end)
