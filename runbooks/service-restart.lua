-- service-restart: restart a service through its service manager, count
-- the attempts, check its status and health afterwards, and when it does
-- not come back raise the incident's severity and say so through notify.
--
--   runbook run service-restart --target prod -p service=api -p severity=P2
--   runbook run service-restart --target prod --dry-run   (status and health for real; no restart)
--
-- Target keys (docs/targets.md): services, manager (+ compose_file /
-- commands / pm2_bin, pm2_home, pm2_ecosystem / supervisor_conf / ssh),
-- health, slow_after; notify channels from the config.  With pm2, an app
-- the daemon no longer knows (after `pm2 kill`, a reboot) is started from
-- pm2_ecosystem instead of restarted.
local health = require("health")
local incident = require("incident")
local service = require("service")

runbook {
  name = "service-restart",
  title = "Restart a service and make sure it came back",
  severity = "P2",
  description = "Restarts one service through systemd, docker compose, pm2, supervisord or the target's " ..
    "commands, up to `attempts` times; checks its status and health endpoints afterwards; " ..
    "raises the severity and notifies when it does not come back.",
}

param("service", { help = "the service to restart (default: the target's first service)" })
param("severity", { help = "the incident's severity now", default = "P2", choices = incident.LEVELS })
param("attempts", { help = "restarts to try before giving up", default = 2 })
param("settle", { help = "seconds to wait for the service to run and pass its health checks", default = 20 })

-- What the steps share is in `state` (attempts, simulated, raised):
-- recorded at each step end, so a --resume'd run counts on from there.

-- poll, with its timeout as false instead of an error; Ctrl-C still
-- stops (a runbook's pcall lets it through).
local function waited(fn, opts)
  return (pcall(poll, fn, opts))
end

local function service_name(p)
  return service.default(p.service, { needed_for = "restart" })
end

-- The restart did not bring the service back: raise the severity once,
-- tell people, and fail the step with why.
local function restart_failed(p, why)
  if not state.raised then
    state.raised = incident.escalate(p.severity, { at_least = "P1" })
    incident.declare(state.raised, why, { previous = p.severity })
    incident.announce("restart_failed", { severity = state.raised, previous = p.severity,
      service = service_name(p), attempts = state.attempts or 0, error = why }, { required = false })
  end
  error(string.format("%s (severity now %s)", why, state.raised), 0)
end

-- Wait until the service runs; true, or false and its last state.
local function comes_up(name, settle)
  local last
  local ok = waited(function()
    last = service.status(name, { quiet = true })
    return last.running
  end, { every = 0.5, timeout = settle, what = name .. " running" })
  return ok, last
end

step("Look at the service before restarting", { id = "before" }, function(p)
  local name = service_name(p)
  local st = service.status(name)
  state.before = { state = st.state, running = st.running }
  log.info("%s: %s (%s, %s); severity now %s", name, st.state, st.manager, st.where, p.severity)
end)

step("Restart the service", { id = "restart", dangerous = true }, function(p)
  local name = service_name(p)
  local max = math.max(1, math.floor(tonumber(p.attempts) or 2))
  local settle = tonumber(p.settle) or 20
  local why
  for i = 1, max do
    state.attempts = (state.attempts or 0) + 1
    log.info("restart attempt %d of %d (%d in this run)", i, max, state.attempts)
    local r = service.restart(name, { check = false })
    if r.note then log.info("%s", r.note) end
    if r.dry_run then
      log.info("dry run: the restart was not run; not waiting for %s", name)
      state.simulated = true
      return
    end
    if r.ok then
      local up, st = comes_up(name, settle)
      if up then
        log.info("%s is running after attempt %d", name, state.attempts)
        return
      end
      why = string.format("%s restarted but is %s after %s s", name, st and st.state or "unknown", tostring(settle))
    else
      -- say what the service is now: a crash-looping pm2 app can make pm2's
      -- own restart fail ("Process with pid N already exists")
      why = string.format("%s through %s exited with code %d: %s; %s is now: %s", r.action, r.manager,
        r.code, r.reason, name, service.status(name, { quiet = true }).state)
    end
    log.warn("attempt %d failed: %s", state.attempts, why)
    if not r.retryable then
      log.warn("not trying again: another attempt cannot work")
      break
    end
  end
  restart_failed(p, why)
end)

-- After a simulated restart the real state is read once and said as it
-- is: nothing was restarted, so nothing is waited for or escalated.
local function after_simulated(name, settle)
  local st = service.status(name)
  log.info("dry run: the restart was simulated, so %s was not waited for; its state now: %s",
    name, st.state)
  if target.health ~= nil then
    health.await(nil, { simulated = true, timeout = settle, what = "health endpoints passing" })
  end
end

step("Check status and health afterwards", { id = "after" }, function(p)
  local name = service_name(p)
  if state.simulated then return after_simulated(name, tonumber(p.settle) or 20) end
  local st = service.status(name)
  log.info("%s: %s", name, st.state)
  if not st.running then restart_failed(p, string.format("%s is %s after the restart", name, st.state)) end
  if target.health == nil then
    log.warn("no health endpoints to check: add health = { ... } to the target")
    return
  end
  local settle = tonumber(p.settle) or 20
  local s
  local ok = waited(function()
    s = health.summary(health.check(nil, { quiet = true, timeout = 5 }))
    return s.failing == 0
  end, { every = 0.5, timeout = settle, what = "health endpoints passing" })
  health.check(nil, { timeout = 5 })     -- the table, for the operator and the transcript
  if not ok then restart_failed(p, string.format("%s runs but its health checks fail: %s", name, s.text)) end
  log.info("healthy: %s", s.text)
end)

step("Announce the outcome", { id = "announce" }, function(p)
  local name = service_name(p)
  local answer = choose("Announce the incident as resolved?", { "yes", "no" }, { default = "no" })
  if answer ~= "yes" then
    log.info("not announced; the incident stays %s", p.severity)
    return
  end
  incident.announce("resolved", { severity = p.severity, service = name,
    summary = string.format("restarted after %d attempt(s); status and health checks pass", state.attempts or 0) })
end)
