-- rollback: put the previous release back after a bad deployment.
-- runbook run rollback --target prod            (rehearse with --dry-run)
--
-- Reads target.releases (a git checkout, or releases/<id> with a current
-- symlink: see stdlib/deploy.lua), target.commands.restart (argv, "%s" =
-- the service) and target.health (URLs that answer 2xx when healthy).
runbook {
  name = "rollback",
  title = "Roll back to the previous release",
  severity = "P1",
  description = "Lists the recent deployments, rolls the release directory back to the one " ..
    "before the current (or -p to=ID) after the operator confirms, restarts the service, " ..
    "waits for it to be healthy and records which deployment was reverted.",
}

param("service", { help = "the service to restart (default: target.params.service, else " ..
  "the first of target.services)" })
param("to", { help = "the deployment to go back to (a commit or release id; default: the one " ..
  "before the current)" })
param("health_timeout", { help = "seconds to wait for the health checks to pass", default = "60" })

local deploy = require("deploy")

-- Shared between the steps of one run.
local state = {}

local function service_name(p)
  return p.service or (target.services and target.services[1]) or "app"
end

-- target.commands.<action> with "%s" replaced by the service.  (To move
-- to stdlib/service.lua once it exists.)
local function service_argv(action, service)
  local cmd = target.commands and target.commands[action]
  if type(cmd) ~= "table" then return nil end
  local argv = {}
  for i, a in ipairs(cmd) do argv[i] = (tostring(a):gsub("%%s", (service:gsub("%%", "%%%%")))) end
  argv.timeout = 120
  return argv
end

local function health_urls()
  local h = target.health
  if type(h) == "string" then return { h } end
  return type(h) == "table" and h or {}
end

-- One health check: the response when it is 2xx, else nil and why.
local function check(url)
  local ok, r = pcall(http.get, url, { timeout = 5, cacert = target.tls and target.tls.cacert })
  if not ok then return nil, tostring(r) end
  if r.status < 200 or r.status > 299 then
    return nil, string.format("status %d: %s", r.status, (r.body or ""):sub(1, 120))
  end
  return r
end

step("List the recent deployments", { id = "deployments" }, function(p)
  local d = deploy.list(target.releases)
  log.info("%s (%s layout), newest first:", d.dir, d.layout)
  for _, it in ipairs(d.items) do
    log.info("%s %s", it.current and "->" or "  ", deploy.describe(it))
  end
  local to = p.to and deploy.find(d, p.to) or deploy.previous(d)
  if to.id == d.current.id then error(string.format("%s is already the running deployment", to.short)) end
  state.from, state.to = d.current, to
  log.info("plan: roll %s back from %s to %s", d.dir, deploy.describe(d.current), deploy.describe(to))
end)

-- Dangerous: the operator confirms right after reading the plan the step
-- above ends with.  Undo (offered when the step fails, e.g. the switch
-- happened but does not read back) puts the release it started from back.
step("Roll back the release", { id = "rollback", dangerous = true, timeout = 300,
  undo = function()
    if state.from then deploy.activate(target.releases, state.from) end
  end }, function()
  if not state.to then error("no rollback plan: run the 'deployments' step first", 0) end
  local r = deploy.rollback(target.releases, { to = state.to.id })
  state.reverted, state.restored, state.simulated = r.reverted, r.restored, r.dry_run
end)

step("Restart the service", { id = "restart", dangerous = true, timeout = 180 }, function(p)
  local svc = service_name(p)
  local argv = service_argv("restart", svc)
  if argv then
    exec(argv)
  else
    manual(string.format("Restart %s so it runs the restored release (no target.commands.restart " ..
      "in the config)", svc))
  end
end)

step("Verify the service is healthy", { id = "verify-health" }, function(p)
  local urls = health_urls()
  if #urls == 0 then
    manual(string.format("Check that %s is healthy (no target.health URLs in the config)", service_name(p)))
    return
  end
  local timeout = tonumber(p.health_timeout) or 60
  for _, url in ipairs(urls) do
    local last
    local ok, err = pcall(poll, function()
      local r, why = check(url)
      last = why
      return r
    end, { every = 1, timeout = timeout, what = "2xx from " .. url })
    if not ok then
      log.error("severity declared: P0 (%s still unhealthy after the rollback: %s)", service_name(p),
        tostring(last))
      error(string.format("%s is not healthy after the rollback (last answer: %s)", url, tostring(last)), 0)
    end
    local r = check(url)
    log.info("healthy: %s answers %d %s", url, r and r.status or 0, r and (r.body or ""):sub(1, 120) or "")
  end
end)

step("Record the rollback", { id = "record" }, function(p)
  local svc = service_name(p)
  local text
  if state.reverted then
    text = string.format("%s rolled back%s: reverted deployment %s; now running %s", svc,
      state.simulated and " (dry run, nothing changed)" or "", deploy.describe(state.reverted),
      deploy.describe(state.restored))
  else
    local d = deploy.list(target.releases)
    text = string.format("%s: no rollback in this run; running %s", svc, deploy.describe(d.current))
  end
  log.info("%s", text)
  notify(text)
end)
