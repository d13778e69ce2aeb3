-- db-restore: restore a PostgreSQL database from a pg_dump -Fc file, under a team lock.
-- Run it with `runbook run db-restore --target prod -p service=api`
-- (or -p db=URL -p dump=FILE); rehearse it with `--dry-run`, which reads
-- the dump and the database for real and changes nothing.

runbook {
  name = "db-restore",
  title = "Restore PostgreSQL from the last known-good dump",
  severity = "P0",
  description = "Approval by a second person, the team lock (one restore per database at a time), the service " ..
    "stopped or in maintenance, pg_restore --clean in one transaction, migrations when the " ..
    "target names them, the service started, then row counts checked against the dump and " ..
    "the health URLs.",
}

param("db", { help = "database URL to restore into (default: the target's db)", secret = true })
param("dump", { help = "pg_dump -Fc file (default: the newest *.dump in the target's backup_dir)" })
param("service", { help = "the service using the database, stopped during the restore " ..
  "(default: the target's first service; with neither, nothing is stopped or started)" })

local pg = require("pg")
local health = require("health")
local service = require("service")

-- pg_restore's statements give up after this long waiting for a lock that
-- a forgotten session holds, instead of hanging the incident.
local LOCK_TIMEOUT_MS = 120000
local RESTORE_TIMEOUT = 6 * 3600

-- The database and the lock, resolved by whichever step needs them first,
-- so --start-at and --resume work too (the URL holds the password: it is
-- kept here, not in `state`).  In `state`, recorded and restored by
-- --resume: the dump chosen (state.dump, state.dump_from) and what the
-- run left down (state.down).
local ctx = {}

local function human_size(bytes)
  if bytes >= 1e9 then return string.format("%.1f GB", bytes / 1e9) end
  if bytes >= 1e6 then return string.format("%.1f MB", bytes / 1e6) end
  return string.format("%.0f kB", bytes / 1e3)
end

local function utc(t)
  return os.date("!%Y-%m-%d %H:%M UTC", t)
end

-- The database and the lock; the dump is the preflight's choice (state.dump),
-- or, for a run started at a later step, -p dump or the newest in
-- backup_dir, read through before anything is stopped (see readable).
local function resolve(p)
  if ctx.url == nil then
    local url = p.db or target.db
    if url == nil then
      error("no database: pass -p db=URL, or set db = env(\"...\") in the target (docs/targets.md)", 0)
    end
    ctx.url, ctx.server = url, pg.server(url)
    ctx.lock_name = "db-restore:" .. (target.name or ctx.server)
  end
  if state.dump == nil and p.dump ~= nil then
    state.dump, state.dump_from = p.dump, "-p dump"
  elseif state.dump == nil then
    if target.backup_dir == nil then
      error("no dump: pass -p dump=FILE, or set backup_dir = \"/var/backups/postgres\" in the " ..
        "target (its dumps are listed to choose from, the newest first)", 0)
    end
    local dump, why = pg.newest_dump(target.backup_dir)
    if dump == nil then error(why, 0) end
    state.dump, state.dump_from = dump, "the newest dump in " .. target.backup_dir
  end
  ctx.dump, ctx.dump_from = state.dump, state.dump_from
  return ctx
end

-- The dumps of backup_dir, newest first, for the operator to choose from;
-- with --yes the newest.  An older dump is only ever the operator's choice.
local function choose_dump(p)
  if p.dump ~= nil or target.backup_dir == nil then return end
  local list, why = pg.dumps(target.backup_dir)
  if list == nil then error(why, 0) end
  log.info("dumps in %s, newest first:", target.backup_dir)
  local labels = {}
  for i, d in ipairs(list) do
    labels[i] = string.format("%s  %s  %s", d.name, human_size(d.size), utc(d.mtime))
    log.info("  %d) %s", i, labels[i])
  end
  local pick = #list == 1 and labels[1] or choose("Which dump to restore?", labels, { default = labels[1] })
  for i, l in ipairs(labels) do
    if l == pick then
      state.dump = list[i].path
      state.dump_from = i == 1 and ("the newest dump in " .. target.backup_dir)
        or string.format("dump %d of %d in %s, chosen", i, #list, target.backup_dir)
    end
  end
end

local function other_dumps_hint()
  local list = target.backup_dir and pg.dumps(target.backup_dir) or {}
  if #list > 1 then
    return string.format(". Nothing has been stopped. %d other dump(s) in %s: retry this step and " ..
      "choose one, or pass -p dump=FILE", #list - 1, target.backup_dir)
  end
  return ". Nothing has been stopped. Pass another dump with -p dump=FILE"
end

-- Reads the whole dump (every data block) once per run; refuses one that
-- does not read through, with pg_restore's own words.
local function readable(c)
  if c.dump_read == c.dump then return end
  local ok, why = pg.read_dump(c.dump)
  if not ok then
    error(string.format("the dump %s does not read through, so it cannot be restored: %s%s", c.dump,
      why, other_dumps_hint()), 0)
  end
  c.dump_read = c.dump
  log.info("dump read through: %s (every data block)", c.dump)
end

-- Taken in its own step; every step that changes something requires it
-- (a no-op when held), so a skipped lock step or --start-at cannot restore
-- without it.
requirement("team_lock", function(p)
  local c = resolve(p)
  return lock(c.lock_name, { url = c.url })
end)

-- Says what a simulated action would have done: a simulated action is
-- never reported as done.
local function said(r, would, done)
  if r.dry_run then
    log.info("dry run: would %s", would)
  else
    log.info("%s", done)
  end
end

-- Takes the service (-p service, else the target's first) out of use
-- (down) or puts it back: service.down/up, maintenance mode when the
-- target names its commands.  state.down says what is left down, for the
-- restore's error.
local function take_service(p, down)
  local name = service.default(p.service)
  if name == nil then
    log.info(down and "skipped: no service given (-p service=NAME, or services = { ... } in the target); " ..
      "make sure nothing writes to the database"
      or "skipped: no service given (-p service=NAME), so nothing was stopped and nothing is started")
    return
  end
  local r = down and service.down(name) or service.up(name)
  if not r.dry_run then state.down = r.left end
end

-- "(rows unknown: locked by pid 123)" for a table whose count would wait.
local function count_text(n, locked_by)
  if locked_by then return "rows unknown: locked by " .. locked_by end
  if n == false then return "(missing)" end
  return tostring(n)
end

step("Check the dump and the database", { id = "preflight" }, function(p)
  choose_dump(p)
  local c = resolve(p)
  local st = file.stat(c.dump)
  if st == nil or st.type ~= "file" then error("the dump " .. c.dump .. " does not exist or is not a file", 0) end
  log.info("dump: %s (%s), %s, modified %s", c.dump, c.dump_from, human_size(st.size), utc(st.mtime))
  readable(c)
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
  local now, locked = pg.row_counts(db, quoted)
  log.info("%d table(s) with data in the dump; rows in the database now:", #tables)
  for _, t in ipairs(tables) do
    print(string.format("    %-40s %s", t.relation, count_text(now[t.quoted], locked[t.quoted])))
  end
  for _, t in ipairs(tables) do
    if locked[t.quoted] then
      log.warn("%s is locked by %s: the restore would wait for it (up to %d s) and then fail; " ..
        "end that session first (runbook run db-diagnose)", t.relation, locked[t.quoted],
        LOCK_TIMEOUT_MS // 1000)
    end
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
  local name = service.default(p.service)
  log.info("plan: replace the data of %s with %s%s", c.server, c.dump,
    name and (", " .. name .. " to be stopped during the restore") or "")
  -- A second person's approval: with the config's `room`, the incident
  -- lead gives it with `runbook approve RUN` from their own machine (the
  -- operator's own identity is refused); without one, the operator types
  -- who approved, recorded as attested by the operator.
  approve("Has the incident lead approved this restore?", { from = "other", timeout = 1800 })
end)

step("Take the team lock", { id = "lock", requires = { "team_lock" } }, function()
  -- (the requirement takes it, before this function runs)
end)

step("Stop the service", { id = "stop", dangerous = true, requires = { "team_lock" } }, function(p)
  readable(resolve(p))   -- already done unless the run started after the preflight
  take_service(p, true)
end)

step("Restore the dump", {
  id = "restore", dangerous = true, requires = { "team_lock" },
  -- --single-transaction: a failed restore leaves the database as it was,
  -- so undoing means bringing the service back.
  undo = function(p) take_service(p, false) end,
}, function(p)
  local c = resolve(p)
  local url, env = pg.restore_args(c.url)
  env.PGOPTIONS = "-c lock_timeout=" .. LOCK_TIMEOUT_MS
  local ok, r = pcall(exec, { pg.tool("pg_restore"), "--clean", "--if-exists", "--single-transaction",
    "--exit-on-error", "--no-password", "--dbname=" .. url, c.dump,
    env = env, timeout = RESTORE_TIMEOUT })
  if not ok then
    -- The database is as it was (one transaction); the service is not: say
    -- so where the run ends, so nobody leaves it down by accident.
    if state.down then
      error(string.format("%s; %s: bring it back with undo, or `runbook run db-restore --start-at start`",
        tostring(r), state.down), 0)
    end
    error(r, 0)
  end
  said(r, string.format("restore %s into %s (pg_restore not run)", c.dump, c.server),
    string.format("restored %s into %s in %.1f s", c.dump, c.server, r.duration or 0))
end)

step("Run the migrations", { id = "migrate", requires = { "team_lock" } }, function(p)
  local c = resolve(p)
  if type(target.migrate) ~= "table" then
    log.info("skipped: the target names no migrate command (migrate = { argv... })")
    return
  end
  local spec = { table.unpack(target.migrate) }
  spec.env, spec.timeout = { DATABASE_URL = c.url }, 1800
  exec(spec)
end)

step("Start the service", { id = "start", requires = { "team_lock" } }, function(p)
  take_service(p, false)
end)

step("Verify row counts and health", { id = "verify" }, function(p)
  local c = resolve(p)
  local want, order = pg.dump_row_counts(c.dump)
  local db = pg.connect(c.url)
  local have, locked = pg.row_counts(db, order)
  for _, rel in ipairs(order) do
    print(string.format("    %-40s dump %8d   database %s", rel, want[rel], count_text(have[rel], locked[rel])))
  end
  local unknown = {}
  for _, rel in ipairs(order) do
    if locked[rel] then unknown[#unknown + 1] = rel .. " (locked by " .. locked[rel] .. ")" end
  end
  if #unknown > 0 and not dry_run then
    error(string.format("cannot check the row counts of %s: retry once that session ends",
      table.concat(unknown, ", ")), 0)
  end
  for _, rel in ipairs(order) do
    if locked[rel] then have[rel] = want[rel] end   -- a dry run only reports it, above
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
  -- The service may take a moment to answer after its start; after a
  -- simulated start the real state is read once (health.await).
  local ok, summary = health.await(target.health, { every = 2, timeout = 60,
    what = "every health check of the target to pass" })
  if summary.simulated then return end
  if not ok then
    error(string.format("the data is back but health still fails: %s", summary.text), 0)
  end
  log.info("health: %s", summary.text)
end)
