-- rollback: put the previous release back after a bad deployment.
-- runbook run rollback --target prod            (rehearse with --dry-run)
--
-- Reads target.releases (a git checkout, or releases/<id> with a current
-- symlink: see stdlib/deploy.lua), the target's service manager
-- (stdlib/service.lua) and target.health (URLs that answer 2xx when healthy).
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
local health = require("health")
local service = require("service")
local incident = require("incident")

-- What the steps share is in `state` (state.from, state.to, state.reverted,
-- ...): recorded at each step end, so a --resume'd run still has the plan.
local function service_name(p)
  return service.default(p.service) or "app"
end

-- One health check: the response when it is 2xx, else nil and why.
local function check(url)
  local r = health.check({ url }, { timeout = 5, quiet = true })[1]
  if not r.ok then return nil, r.problem end
  return r
end

step("List the recent deployments", { id = "deployments" }, function(p)
  local d = deploy.list()
  log.info("%s (%s layout), newest first:", d.dir, d.layout)
  for _, it in ipairs(d.items) do
    log.info("%s %s", it.current and "->" or "  ", deploy.describe(it))
  end
  local to = p.to and deploy.find(d, p.to) or deploy.previous(d)
  if to.id == d.current.id then error(string.format("%s is already the running deployment", to.short)) end
  state.from, state.to = d.current, to
  log.info("plan: roll %s back from %s to %s", d.dir, deploy.describe(d.current), deploy.describe(to))
end)

-- Dangerous: a second person approves it (approval = "other": through the
-- config's room, else attested by the operator), then the operator
-- confirms right after reading the plan the step above ends with.  Undo
-- (offered when the step fails, e.g. the switch happened but does not read
-- back) puts the release it started from back.
step("Roll back the release", { id = "rollback", dangerous = true, timeout = 300, approval = "other",
  undo = function()
    if state.from then deploy.activate(state.from) end
  end }, function()
  if not state.to then error("no rollback plan: run the 'deployments' step first", 0) end
  local r = deploy.rollback({ to = state.to.id })
  state.reverted, state.restored, state.simulated = r.reverted, r.restored, r.dry_run
end)

step("Restart the service", { id = "restart", dangerous = true, timeout = 180 }, function(p)
  local svc = service_name(p)
  if target.manager == nil then
    manual(string.format("Restart %s so it runs the restored release (the target names no " ..
      "manager, see docs/targets.md)", svc))
    return
  end
  service.restart(svc)
end)

step("Verify the service is healthy", { id = "verify-health" }, function(p)
  local urls = target.health
  if type(urls) == "string" then urls = { urls } end
  if type(urls) ~= "table" or #urls == 0 then
    manual(string.format("Check that %s is healthy (no target.health URLs in the config)", service_name(p)))
    return
  end
  local timeout = tonumber(p.health_timeout) or 60
  for _, url in ipairs(urls) do
    local last
    local ok = pcall(poll, function()
      local r, why = check(url)
      last = why
      return r
    end, { every = 1, timeout = timeout, what = "2xx from " .. tostring(url) })
    if not ok then
      incident.declare("P0", string.format("%s still unhealthy after the rollback: %s", service_name(p),
        tostring(last)))
      error(string.format("%s is not healthy after the rollback (last answer: %s)", tostring(url),
        tostring(last)), 0)
    end
    local r = check(url)
    log.info("healthy: %s answers %d %s", r and r.url or tostring(url), r and r.status or 0,
      r and (r.body or ""):sub(1, 120) or "")
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
    local d = deploy.list()
    text = string.format("%s: no rollback in this run; running %s", svc, deploy.describe(d.current))
  end
  log.info("%s", text)
  notify(text)
end)
