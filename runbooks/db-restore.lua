-- db-restore: restore a PostgreSQL database from a pg_dump -Fc file, under a team lock.
-- Run it with `runbook run db-restore --target prod -p service=api`
-- (or -p db=URL -p dump=FILE); rehearse it with `--dry-run`, which reads
-- the dump and the database for real and changes nothing.

runbook {
  name = "db-restore",
  title = "Restore PostgreSQL from the last known-good dump",
  severity = "P0",
  description = "Approval, the team lock (one restore per database at a time), the service " ..
    "stopped or in maintenance, pg_restore --clean in one transaction, migrations when the " ..
    "target names them, the service started, then row counts checked against the dump and " ..
    "the health URLs.",
}

param("db", { help = "database URL to restore into (default: the target's db)", secret = true })
param("dump", { help = "pg_dump -Fc file (default: the newest *.dump in the target's backup_dir)" })
param("service", { help = "the service using the database, stopped during the restore " ..
  "(without it nothing is stopped or started)" })

local pg = require("pg")
local health = require("health")
local service = require("service")

-- pg_restore's statements give up after this long waiting for a lock that
-- a forgotten session holds, instead of hanging the incident.
local LOCK_TIMEOUT_MS = 120000
local RESTORE_TIMEOUT = 6 * 3600

-- What the steps share; resolved by whichever step needs it first, so
-- --start-at and --resume work too.
local ctx = {}

local function resolve(p)
  if ctx.url then return ctx end
  local url = p.db or target.db
  if url == nil then
    error("no database: pass -p db=URL, or set db = env(\"...\") in the target (docs/targets.md)", 0)
  end
  local dump, from = p.dump, "-p dump"
  if dump == nil then
    if target.backup_dir == nil then
      error("no dump: pass -p dump=FILE, or set backup_dir = \"/var/backups/postgres\" in the " ..
        "target (its newest *.dump is restored)", 0)
    end
    local why
    dump, why = pg.newest_dump(target.backup_dir)
    if dump == nil then error(why, 0) end
    from = "the newest dump in " .. target.backup_dir
  end
  ctx.url, ctx.dump, ctx.dump_from = url, dump, from
  ctx.server = pg.server(url)
  ctx.lock_name = "db-restore:" .. (target.name or ctx.server)
  return ctx
end

-- Taken in its own step; every step that changes something takes it again
-- (a no-op when held), so a skipped lock step or --start-at cannot restore
-- without it.
local function team_lock(p)
  local c = resolve(p)
  return lock(c.lock_name, { url = c.url })
end

-- Maintenance mode is the target's commands.maintenance_on/off (argv, %s =
-- the service), run here; stdlib/service.lua has no maintenance verb yet.
local function has_maintenance()
  return type(target.commands) == "table" and target.commands.maintenance_on ~= nil
end

local function maintenance(which, service)
  local argv = target.commands[which]
  if type(argv) ~= "table" then
    error(string.format("the target has commands.maintenance_on but no commands.%s: add it " ..
      "(argv, %%s = the service)", which), 0)
  end
  local spec = {}
  for i, a in ipairs(argv) do spec[i] = (tostring(a):gsub("%%s", function() return service end)) end
  spec.timeout = 300
  exec(spec)
end

-- Takes the service out of use (down) or puts it back: maintenance mode
-- when the target names its commands, else a stop or start through the
-- service manager.
local function take_service(p, down)
  if p.service == nil then
    log.info(down and "skipped: no service given (-p service=NAME); make sure nothing writes to the database"
      or "skipped: no service given (-p service=NAME), so nothing was stopped and nothing is started")
    return
  end
  if has_maintenance() then
    maintenance(down and "maintenance_on" or "maintenance_off", p.service)
    log.info("%s: maintenance mode %s", p.service, down and "on" or "off")
  elseif down then
    service.stop(p.service)
    log.info("%s stopped", p.service)
  else
    service.start(p.service)
    log.info("%s started", p.service)
  end
end

step("Check the dump and the database", { id = "preflight" }, function(p)
  local c = resolve(p)
  local st = require("runbook.sys").stat(c.dump)
  if st == nil or st.type ~= "file" then error("the dump " .. c.dump .. " does not exist or is not a file", 0) end
  local size = st.size >= 1e6 and string.format("%.1f MB", st.size / 1e6)
    or string.format("%.0f kB", st.size / 1e3)
  log.info("dump: %s (%s), %s, modified %s", c.dump, c.dump_from, size,
    os.date("!%Y-%m-%d %H:%M UTC", st.mtime))
  local tables = pg.dump_tables(c.dump)
  if #tables == 0 then error("the dump " .. c.dump .. " holds no table data (pg_restore --list)", 0) end
  local db = pg.connect(c.url)
  local info = db:query([[select current_database() as db, current_setting('server_version') as version,
    (select count(*) from pg_stat_activity where datname = current_database()
       and pid <> pg_backend_pid()) as sessions]])[1]
  log.info("database %s on %s (PostgreSQL %s), %d other session(s) connected", info.db, c.server,
    info.version, info.sessions)
  local quoted = {}
  for i, t in ipairs(tables) do quoted[i] = t.quoted end
  local now = pg.row_counts(db, quoted)
  log.info("%d table(s) with data in the dump; rows in the database now:", #tables)
  for _, t in ipairs(tables) do
    print(string.format("    %-40s %s", t.relation, now[t.quoted] == false and "(missing)" or tostring(now[t.quoted])))
  end
  local ok, who = pcall(lock.holder, c.lock_name, { url = c.url })
  if ok and who then
    log.warn("lock %s is held by %s@%s since %s: this run will be refused at the lock step",
      c.lock_name, who.operator or "?", who.host or "?", who.since or "?")
  elseif not ok then
    log.warn("cannot read the team lock now: %s", tostring(who))
  end
end)

step("Get the restore approved", { id = "approval" }, function(p)
  local c = resolve(p)
  log.info("plan: replace the data of %s with %s%s", c.server, c.dump,
    p.service and (", with " .. p.service .. " stopped") or "")
  confirm("Has the incident lead approved this restore?")
end)

step("Take the team lock", { id = "lock" }, function(p)
  team_lock(p)
end)

step("Stop the service", { id = "stop", dangerous = true }, function(p)
  team_lock(p)
  take_service(p, true)
end)

step("Restore the dump", {
  id = "restore", dangerous = true,
  -- --single-transaction: a failed restore leaves the database as it was,
  -- so undoing means bringing the service back.
  undo = function(p) take_service(p, false) end,
}, function(p)
  local c = resolve(p)
  team_lock(p)
  local url, env = pg.restore_args(c.url)
  env.PGOPTIONS = "-c lock_timeout=" .. LOCK_TIMEOUT_MS
  local r = exec { pg.tool("pg_restore"), "--clean", "--if-exists", "--single-transaction",
    "--exit-on-error", "--no-password", "--dbname=" .. url, c.dump,
    env = env, timeout = RESTORE_TIMEOUT }
  log.info("restored %s into %s in %.1f s", c.dump, c.server, r.duration or 0)
end)

step("Run the migrations", { id = "migrate" }, function(p)
  local c = resolve(p)
  if type(target.migrate) ~= "table" then
    log.info("skipped: the target names no migrate command (migrate = { argv... })")
    return
  end
  team_lock(p)
  local spec = { table.unpack(target.migrate) }
  spec.env, spec.timeout = { DATABASE_URL = c.url }, 1800
  exec(spec)
end)

step("Start the service", { id = "start" }, function(p)
  team_lock(p)
  take_service(p, false)
end)

step("Verify row counts and health", { id = "verify" }, function(p)
  local c = resolve(p)
  local want, order = pg.dump_row_counts(c.dump)
  local db = pg.connect(c.url)
  local have = pg.row_counts(db, order)
  for _, rel in ipairs(order) do
    print(string.format("    %-40s dump %8d   database %s", rel, want[rel],
      have[rel] == false and "(missing)" or tostring(have[rel])))
  end
  local diffs = pg.compare_counts(want, have)
  if #diffs == 0 then
    log.info("row counts match the dump for all %d table(s)", #order)
  else
    local parts = {}
    for _, d in ipairs(diffs) do
      parts[#parts + 1] = string.format("%s: dump %d, database %s", d.relation, d.want,
        d.have == false and "missing" or tostring(d.have))
    end
    if dry_run then
      log.info("dry run: nothing was restored, so the database still differs from the dump: %s",
        table.concat(parts, "; "))
    else
      error(string.format("row counts differ from the dump in %d table(s): %s", #diffs,
        table.concat(parts, "; ")), 0)
    end
  end
  if target.health == nil then
    log.info("no health URLs in the target (health = { ... }): health not checked")
    return
  end
  -- The service may take a moment to answer after its start.
  local summary
  local ok, err = pcall(poll, function()
    summary = health.summary(health.check(target.health, { quiet = true }))
    return summary.failing == 0
  end, { every = 2, timeout = 60, what = "every health check of the target to pass" })
  if not ok then
    error(string.format("the data is back but health still fails: %s", summary and summary.text or tostring(err)), 0)
  end
  log.info("health: %s", summary.text)
end)
