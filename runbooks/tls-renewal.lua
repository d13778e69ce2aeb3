-- tls-renewal: a certificate is about to expire (or has): renew it with
-- certbot, reload the server, and check what is served afterwards.
-- runbook run tls-renewal --target prod        (rehearse with --dry-run)
--
-- Reads target.tls (docs/targets.md): endpoints (https:// URLs), files
-- (PEM certificates on disk), renew (argv; `--dry-run` is appended for the
-- rehearsal), reload (argv), cacert, warn_days.
runbook {
  name = "tls-renewal",
  title = "Renew expiring TLS certificates",
  severity = "P2",
  description = "Checks when the endpoints' and files' certificates expire, rehearses the " ..
    "renewal (certbot renew --dry-run), renews after the operator confirms, reloads the " ..
    "server and verifies the new expiry on the wire and on disk.",
}

param("warn_days", { help = "renew when a certificate has fewer days left than this (default: " ..
  "target.tls.warn_days, else 21)" })
param("force", { help = "renew even when no certificate is due", default = "no", choices = { "yes", "no" } })
param("verify_timeout", { help = "seconds to wait for the new certificates to be served", default = "60" })

local tls = require("tls")
local incident = require("incident")

-- What the steps share is in `state` (the certificates before, what the
-- renewal did): recorded at each step end, so a --resume'd run still
-- compares the new expiry with the old.

local function cfg()
  local t = target.tls
  if type(t) ~= "table" or (#(t.endpoints or {}) == 0 and #(t.files or {}) == 0) then
    error("no certificates to check: add targets.<name>.tls = { endpoints = { \"https://...\" }, " ..
      "files = { \"/etc/ssl/...\" }, renew = {...}, reload = {...} } to the config (docs/targets.md)", 0)
  end
  return t
end

local function warn_days(p)
  return tonumber(p.warn_days) or tonumber(cfg().warn_days) or 21
end

local function argv_of(key)
  local cmd = cfg()[key]
  if type(cmd) ~= "table" or #cmd == 0 then return nil end
  local argv = {}
  for i, a in ipairs(cmd) do argv[i] = tostring(a) end
  return argv
end

-- The renew command as run: for certbot, tls.renew_command adds what a
-- run without a terminal, a forced renewal and a rehearsal against the
-- configured ACME server need, and says so.
local function renew_argv(p, dry_run)
  local argv = argv_of("renew")
  if not argv then
    error("no renew command: add targets.<name>.tls.renew = { \"certbot\", \"renew\" } to the config", 0)
  end
  local force = p.force == "yes" and not dry_run
  local out, cb = tls.renew_command(argv, { dry_run = dry_run, force = force })
  for _, note in ipairs(cb and cb.notes or {}) do log.info("certbot: %s", note) end
  if force and cb == nil then
    log.warn("-p force=yes: %s is not certbot renew, so no --force-renewal was added", argv[1])
  end
  return out, cb
end

-- Steps after the check have nothing to do when nothing is due.
local function nothing_due(what)
  if state.nothing_due then
    log.info("nothing due: %s skipped (-p force=yes renews anyway)", what)
    return true
  end
  if state.certbot_skipped then
    log.info("certbot renewed nothing (not yet due): %s skipped (-p force=yes renews anyway)", what)
    return true
  end
  return false
end

step("Check certificate expiry", { id = "check-expiry" }, function(p)
  local days = warn_days(p)
  cfg()
  local certs, problems = tls.check({ warn_days = days })
  state.before = {}
  for _, c in ipairs(certs) do state.before[c.name] = c end
  local soonest = tls.soonest(certs)
  state.soonest = soonest
  if soonest and soonest.days_left < 3 then
    incident.declare("P1", string.format("%s %s, %.1f days left", soonest.name,
      soonest.days_left < 0 and "has expired" or "expires within 3 days", soonest.days_left))
  end
  if #problems > 0 then
    error(string.format("%d of %d certificates could not be checked: %s", #problems,
      #problems + #certs, table.concat(problems, "; ")), 0)
  end
  if soonest.status == "ok" and p.force ~= "yes" then
    state.nothing_due = true
    log.info("no certificate expires within %d days (soonest: %s, %.1f days)", days, soonest.name,
      soonest.days_left)
  end
end)

-- certbot's --dry-run talks to the staging CA and saves nothing, so it
-- runs for real in a rehearsal too (readonly): that is what a rehearsal
-- wants to know.
step("Rehearse the renewal", { id = "renew-dry-run", timeout = 600 }, function(p)
  if nothing_due("the rehearsal") then return end
  local argv = renew_argv(p, true)
  argv.readonly, argv.timeout = true, 540
  exec(argv)
end)

-- The renewal is confirmed with a question naming the command and the
-- certificate closest to expiry, asked only when something is due;
-- dangerous = true would also ask on runs where nothing is to be done.
step("Renew the certificates", { id = "renew", timeout = 900 }, function(p)
  if nothing_due("the renewal") then return end
  local argv, cb = renew_argv(p, false)
  local soonest = state.soonest
  confirm(string.format("Renew the certificates now with `%s`?%s", table.concat(argv, " "),
    soonest and string.format(" (soonest: %s, %.1f days left)", soonest.name, soonest.days_left) or ""))
  argv.timeout = 840
  local r = exec(argv)
  state.simulated = r.dry_run
  state.forced = p.force == "yes"
  if cb == nil or r.dry_run then return end
  local o = tls.certbot_outcome((r.stdout or "") .. "\n" .. (r.stderr or ""))
  if o.nothing_due then
    state.certbot_skipped = true
    log.warn("certbot renewed nothing: it skipped every certificate as not yet due (certbot renews " ..
      "within renew_before_expiry of expiry, 30 days by default)%s; nothing to reload or verify. " ..
      "-p force=yes renews anyway (--force-renewal)",
      #o.not_due > 0 and (": " .. table.concat(o.not_due, ", ")) or "")
  elseif #o.not_due > 0 then
    log.info("certbot skipped %d certificate(s) not yet due: %s", #o.not_due, table.concat(o.not_due, ", "))
  end
end)

-- A reload (nginx, haproxy, apache) is graceful, and keeps the running
-- configuration when the new one is bad: no second confirmation.
step("Reload the server", { id = "reload", timeout = 300 }, function()
  if nothing_due("the reload") then return end
  local argv = argv_of("reload")
  if argv then
    argv.timeout = 240
    exec(argv)
  else
    manual("Reload the TLS server so it serves the new certificate (no targets.<name>.tls.reload " ..
      "in the config)")
  end
end)

-- A forced renewal replaces certificates that were not due: only a later
-- expiry than before tells the new one from the old one still served.
local function newer(c)
  local before = state.before and state.before[c.name]
  return before == nil or c.expires > before.expires
end

step("Verify the new expiry", { id = "verify" }, function(p)
  if nothing_due("the verification") then return end
  local days = warn_days(p)
  if state.simulated then
    tls.check({ warn_days = days })
    log.info("dry run: nothing was renewed, so the expiry above is unchanged")
    return
  end
  local certs
  poll(function()
    local list, problems = tls.check({ warn_days = days })
    certs = list
    if #problems > 0 then return false end
    for _, c in ipairs(list) do
      if c.status ~= "ok" or (state.forced and not newer(c)) then return false end
    end
    return true
  end, { every = 2, timeout = tonumber(p.verify_timeout) or 60,
    what = string.format("every certificate served and on disk having more than %d days left%s", days,
      state.forced and " and a later expiry than before the renewal" or "") })
  for _, c in ipairs(certs) do
    local before = state.before and state.before[c.name]
    log.info("renewed: %s %s: %s -> %.1f days left (expires %s)", c.kind, c.name,
      before and string.format("%.1f", before.days_left) or "?", c.days_left, c.expires_text)
  end
end)
