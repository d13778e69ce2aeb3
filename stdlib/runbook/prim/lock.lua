-- runbook.prim.lock: the `lock` global, a lock every operator of the team sees.
--
--   local l = lock("db-restore:staging")          -- refused at once when someone holds it
--   local l = lock("deploy:api", { wait = 60 })   -- or wait up to 60 s for it
--   l:release()                                   -- else it is released when the run ends
--   local who = lock.holder("deploy:api")         -- nil, or {operator=, host=, since=, ...}
--   lock.held("deploy:api")                       -- this run's handle, or nil
--
-- Calling lock(name) again while the run holds it returns the same handle.
--
-- Where the lock lives: the config's `lock = { backend = "postgres"|"redis",
-- url = ..., ttl = SECONDS }` (docs/targets.md); without it, the target's
-- `db` (postgres), else the target's `redis`, else opts.url (a runbook's own
-- fallback, such as the database it is about to restore).  Everyone who
-- must see the lock has to use the same server: that is what the config's
-- `lock` table is for.
--
-- A second run asking for a lock that is held is refused with who holds it:
--   lock: db-restore:staging is held by alice@db-admin-1 since
--   2026-01-02T03:04:05Z (4m12s ago) on postgres 10.0.0.5:5432/app ...
-- opts.wait = SECONDS waits for it instead, polling once a second.
--
-- postgres: a connection of its own (not the sql pool, whose connections
-- come and go) takes pg_try_advisory_lock(KEY, hashtext(name)), after
-- setting its application_name to "runbook OPERATOR@HOST since TS":
-- pg_locks and pg_stat_activity show that column to every user, so a
-- refused run can name the holder.  The server drops the lock when the
-- session ends, so a killed run cannot leave it behind.  Two names with the
-- same hashtext would share one lock (refusing too much, never too little).
--
-- redis: SET runbook:lock:NAME <holder JSON> NX PX ttl (ttl: opts.ttl, the
-- config's lock.ttl, else 30 min), released by a compare-and-DEL so a run
-- never deletes a lock that another run took after its own expired.  A run
-- ended by SIGTERM or SIGHUP releases it like any other end; one killed by
-- SIGKILL leaves the key until the TTL runs out, and the refusal says when
-- that is and which key to DEL by hand.
--
-- While the run lasts, every held lock is checked at each step boundary:
-- lock() registers a run.before_step hook, so each step (and each
-- retry) starts by refreshing the redis TTL (compare-and-PEXPIRE) or by
-- checking that the postgres session is alive.  A lock found lost is taken
-- again if it is free; if another run holds it now, the step fails before
-- it does anything.  (A task spawned on the loop could refresh during a
-- long step, but it would be a child of the step and `parallel` joins
-- every child: it would never return.)  So a single step longer than the
-- TTL can lose a redis lock: raise lock.ttl for such runbooks.
--
-- Released at the end of the run through run.cleanup (engine.finish), which
-- runs after the last step, an abort, Ctrl-C, SIGTERM and SIGHUP alike.
--
-- Dry run: who holds the lock is read for real (a run that would be
-- refused is refused in the rehearsal too); taking it is shown as "would
-- take lock" and not done.  Transcript: `call` events lock.check (dry run,
-- lock.holder), lock (take), lock.refresh and lock.release.  A --scenario
-- rule with primitive = "lock" replaces the take: error = "held by ..."
-- rehearses a refusal.
local api = require("runbook.api")
local cjson = require("cjson")
local config = require("runbook.config")
local context = require("runbook.context")
local credis = require("runbook.lazy")("runbook.redis")
local csql = require("runbook.lazy")("runbook.sql")
local errors = require("runbook.errors")
local loop = require("runbook.loop")
local networds = require("runbook.networds")
local operator = require("runbook.operator")
local record = require("runbook.record")
local sys = require("runbook.sys")
local ui = require("runbook.ui")
local urls = require("runbook.url")

-- The advisory lock's first key ("RBLK"): runbook's locks use the two-key
-- form under it, clear of the application's own one-key advisory locks.
local KEY1 = 1380076619
local DEFAULT_TTL = 1800
local CONNECT_TIMEOUT, CALL_TIMEOUT = 5, 10
local REDIS_PREFIX = "runbook:lock:"
-- application_name is cut by the server at 63 bytes (NAMEDATALEN - 1).
local APP_NAME_MAX = 63

-- Compare-and-set scripts: act only when the key still holds our value.
local CAS_PEXPIRE = "if redis.call('GET', KEYS[1]) == ARGV[1] then " ..
  "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end"
local CAS_DEL = "if redis.call('GET', KEYS[1]) == ARGV[1] then " ..
  "return redis.call('DEL', KEYS[1]) else return 0 end"

local function now_iso()
  return os.date("!%Y-%m-%dT%H:%M:%SZ")
end

-- Seconds since an ISO UTC time, or nil.  os.time reads a table as local
-- time: correct by this machine's offset from UTC.
local function seconds_since(iso)
  local y, mo, d, h, mi, s = (iso or ""):match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)Z$")
  if not y then return nil end
  local now = os.time()
  local offset = os.difftime(now, os.time(os.date("!*t", now)))
  local t = os.time({ year = tonumber(y), month = tonumber(mo), day = tonumber(d),
    hour = tonumber(h), min = tonumber(mi), sec = tonumber(s), isdst = false })
  return math.max(0, os.difftime(now, t + offset))
end

local function ago(iso)
  local s = seconds_since(iso)
  if s == nil then return "" end
  s = math.floor(s)
  local text
  if s < 1 then return " (just now)"
  elseif s < 60 then text = string.format("%ds", s)
  elseif s < 3600 then text = string.format("%dm%02ds", s // 60, s % 60)
  elseif s < 86400 then text = string.format("%dh%02dm", s // 3600, s % 3600 // 60)
  else text = string.format("%dd%02dh", s // 86400, s % 86400 // 3600) end
  return " (" .. text .. " ago)"
end

-- Who we are, as the holder others will see.
local function me(run)
  return { operator = operator.username(), host = operator.hostname(), since = now_iso(),
    pid = sys.getpid(), run = run.rec and run.rec.run_id or nil,
    runbook = run.plan and run.plan.name or nil, nonce = sys.random_hex(8) }
end

-- "runbook alice@host since TS", shortened (host first) to what the server keeps.
local function app_name(who)
  local tail = " since " .. who.since
  local id = who.operator .. "@" .. who.host
  local room = APP_NAME_MAX - #"runbook " - #tail
  if #id > room then id = who.operator .. "@" .. (who.host:match("^[^.]+") or who.host) end
  if #id > room then id = id:sub(1, room) end
  return "runbook " .. id .. tail
end

local function describe_holder(who)
  local s = string.format("%s@%s since %s%s", who.operator or "?", who.host or "?",
    who.since or "?", ago(who.since))
  local extra = {}
  if who.runbook then extra[#extra + 1] = "runbook " .. who.runbook end
  if who.pid then extra[#extra + 1] = "pid " .. tostring(math.tointeger(who.pid) or who.pid) end
  if who.backend_pid then extra[#extra + 1] = "server backend pid " .. tostring(who.backend_pid) end
  if who.application then extra[#extra + 1] = "application " .. who.application end
  if #extra > 0 then s = s .. " (" .. table.concat(extra, ", ") .. ")" end
  return s
end

-- ---- where ------------------------------------------------------------------

local function backend_of(url)
  local u = urls.parse(url)
  if u and (u.scheme == "redis" or u.scheme == "rediss") then return "redis" end
  if url:match("^postgres") or url:find("=", 1, true) then return "postgres" end
  return nil
end

-- The lock server: {backend, url, shown, source, ttl}.  Raises a message
-- saying which key to add when there is none.
local function choose_server(run, opts)
  local cfg = run.config and run.config.lock
  local path = run.config and run.config.path or config.default_path()
  local t = run.target or {}
  local url, backend, source, ttl
  if cfg ~= nil and type(cfg) ~= "table" then
    error(string.format("lock: `lock` in %s must be a table { backend =, url = }", path), 0)
  end
  cfg = cfg or {}
  if cfg.backend ~= nil and cfg.backend ~= "postgres" and cfg.backend ~= "redis" then
    error(string.format("lock: lock.backend in %s is %q: use \"postgres\" or \"redis\"", path,
      tostring(cfg.backend)), 0)
  end
  if cfg.url then
    url, backend, source = cfg.url, cfg.backend, "lock.url in " .. path
  elseif cfg.backend == "redis" and t.redis then
    url, backend, source = t.redis, "redis", "the target's redis"
  elseif cfg.backend ~= "redis" and t.db then
    url, backend, source = t.db, "postgres", "the target's db"
  elseif cfg.backend == nil and t.redis then
    url, backend, source = t.redis, "redis", "the target's redis"
  elseif opts.url then
    url, backend, source = opts.url, cfg.backend, "the runbook's fallback (its database)"
  else
    error(string.format("lock: no lock server: add lock = { backend = \"postgres\", url = " ..
      "env(\"LOCK_DB_URL\") } to %s, or db = / redis = to the target (docs/targets.md)", path), 0)
  end
  if type(url) ~= "string" or url == "" then error("lock: the lock server URL from " .. source .. " is empty", 0) end
  backend = backend or backend_of(url)
  if backend == nil then
    error(string.format("lock: cannot tell the backend of the URL from %s: set lock.backend " ..
      "in %s", source, path), 0)
  end
  ttl = opts.ttl or cfg.ttl or DEFAULT_TTL
  if type(ttl) ~= "number" or ttl <= 0 then error("lock: ttl must be a positive number of seconds", 0) end
  local srv = { backend = backend, url = url, source = source, ttl = ttl }
  if backend == "postgres" then
    local parsed, perr = csql.parse(url)
    if parsed == nil then error("lock: cannot parse the lock database URL from " .. source .. ": " .. tostring(perr), 0) end
    if parsed.password and parsed.password ~= "" then record.secret(parsed.password) end
    srv.shown = string.format("postgres %s:%s/%s", parsed.host or parsed.hostaddr or "localhost",
      parsed.port or "5432", parsed.dbname or parsed.user or "?")
  else
    local r, rerr = urls.redis(url)
    if r == nil then error("lock: bad redis URL from " .. source .. ": " .. rerr, 0) end
    if r.password then record.secret(r.password) end
    srv.redis = r
    srv.shown = string.format("redis %s:%d/%d", r.host, r.port, r.db)
  end
  return srv
end

-- ---- postgres ---------------------------------------------------------------

local PG = {}

local function pg_reason(f)
  local msg = f and (f.message or f.kind or f.wake) or "?"
  msg = tostring(msg):match("^%s*([^\n]*)") or ""
  return (msg:gsub("^FATAL:%s+", ""))
end

function PG.open(srv)
  local conn, f = csql.connect(srv.url, CONNECT_TIMEOUT)
  if conn == nil then
    error(string.format("lock: cannot connect to the lock server %s: %s (check %s)", srv.shown,
      pg_reason(f), srv.source), 0)
  end
  return conn
end

function PG.query(srv, conn, sql, ...)
  local v, f = conn:query(sql, table.pack(...), CALL_TIMEOUT, "rows")
  if v == nil then error(string.format("lock: query on %s failed: %s", srv.shown, pg_reason(f)), 0) end
  return v
end

local HOLDER_SQL = [[
select l.pid, a.application_name as app, a.usename as db_user
from pg_locks l left join pg_stat_activity a on a.pid = l.pid
where l.locktype = 'advisory' and l.granted and l.objsubid = 2
  and l.classid = $1::int4::oid and l.objid = hashtext($2)::oid
  and l.database = (select oid from pg_database where datname = current_database())
limit 1]]

function PG.holder_on(srv, conn, name)
  local row = PG.query(srv, conn, HOLDER_SQL, KEY1, name)[1]
  if row == nil then return nil end
  local op, host, since = (row.app or ""):match("^runbook (%S+)@(%S+) since (%S+)$")
  if op then return { operator = op, host = host, since = since, backend_pid = row.pid } end
  return { operator = row.db_user or "?", host = "?", backend_pid = row.pid,
    application = row.app ~= "" and row.app or nil }
end

function PG.holder(srv, name)
  local conn <close> = PG.open(srv)
  return PG.holder_on(srv, conn, name)
end

-- Returns state, or nil and the holder.
function PG.take(srv, name, who)
  local conn = PG.open(srv)
  local ok, got, holder = pcall(function()
    PG.query(srv, conn, "select set_config('application_name', $1, false)", app_name(who))
    local row = PG.query(srv, conn, "select pg_try_advisory_lock($1::int4, hashtext($2)) as got", KEY1, name)[1]
    if row.got then return true end
    return false, PG.holder_on(srv, conn, name)
  end)
  if ok and got then return { conn = conn } end
  conn:close()
  if not ok then error(got, 0) end
  return nil, holder or { operator = "?", host = "?" }
end

-- Still held?  The session being alive is the lock being held.
function PG.check(srv, state)
  if state.conn:status() ~= "ok" then return false end
  return pcall(PG.query, srv, state.conn, "select 1")
end

function PG.release(srv, state, name)
  local conn = state.conn
  state.conn = nil
  if conn == nil then return end
  local ok, err = pcall(PG.query, srv, conn, "select pg_advisory_unlock($1::int4, hashtext($2))", KEY1, name)
  conn:close()        -- ends the session: the server drops the lock in any case
  if not ok then error(err, 0) end
end

-- ---- redis ------------------------------------------------------------------

local RD = {}

function RD.call(srv, c, argv)
  local ok, v = c:call(CALL_TIMEOUT, argv)
  if not ok and v.kind ~= "server" then networds.raise("redis", v, { primitive = "lock" }) end
  if not ok then error(string.format("lock: %s: %s failed: %s", srv.shown, argv[1], v.message), 0) end
  return v
end

function RD.open(srv)
  local r = srv.redis
  local c, f = credis.open(r.host, r.port, CONNECT_TIMEOUT, srv.shown)
  if not c then networds.raise("redis", f, { primitive = "lock" }) end
  local ok, err = pcall(function()
    if r.password then
      RD.call(srv, c, r.user and { "AUTH", r.user, r.password } or { "AUTH", r.password })
    end
    if r.db ~= 0 then RD.call(srv, c, { "SELECT", tostring(r.db) }) end
  end)
  if not ok then
    c:close()
    error(err .. " (check " .. srv.source .. ")", 0)
  end
  return c
end

local function redis_holder(raw)
  local ok, who = pcall(cjson.decode, raw)
  if ok and type(who) == "table" then return who end
  return { operator = "?", host = "?", application = "a value runbook did not write" }
end

function RD.holder(srv, name)
  local c <close> = RD.open(srv)
  local raw = RD.call(srv, c, { "GET", REDIS_PREFIX .. name })
  if raw == nil then return nil end
  local who = redis_holder(raw)
  local ttl = RD.call(srv, c, { "PTTL", REDIS_PREFIX .. name })
  if math.type(ttl) == "integer" and ttl > 0 then who.expires_in = ttl / 1000 end
  return who
end

function RD.take(srv, name, who)
  local key, value = REDIS_PREFIX .. name, cjson.encode(who)
  local c = RD.open(srv)
  local ok, state, holder = pcall(function()
    for _ = 1, 2 do      -- the holder's key may expire between SET and GET
      local set = RD.call(srv, c, { "SET", key, value, "NX", "PX", tostring(math.ceil(srv.ttl * 1000)) })
      if set == "OK" then return { conn = c, key = key, value = value } end
      local raw = RD.call(srv, c, { "GET", key })
      if raw ~= nil then
        local h = redis_holder(raw)
        local ttl = RD.call(srv, c, { "PTTL", key })
        if math.type(ttl) == "integer" and ttl > 0 then h.expires_in = ttl / 1000 end
        return nil, h
      end
    end
    return nil, { operator = "?", host = "?", application = "a key that keeps appearing and expiring" }
  end)
  if not ok then c:close(); error(state, 0) end
  if state == nil then c:close() end
  return state, holder
end

-- Run fn(c) on the state's connection, reconnecting once if it was lost.
local function with_conn(srv, state, fn)
  if state.conn == nil or not state.conn:isopen() then state.conn = RD.open(srv) end
  local ok, res = pcall(fn, state.conn)
  if ok then return res end
  if state.conn:isopen() then error(res, 0) end
  state.conn = RD.open(srv)
  return fn(state.conn)
end

function RD.check(srv, state)
  local ok, n = pcall(with_conn, srv, state, function(c)
    return RD.call(srv, c, { "EVAL", CAS_PEXPIRE, "1", state.key, state.value,
      tostring(math.ceil(srv.ttl * 1000)) })
  end)
  return ok and n == 1
end

function RD.release(srv, state)
  local ok, err = pcall(with_conn, srv, state, function(c)
    return RD.call(srv, c, { "EVAL", CAS_DEL, "1", state.key, state.value })
  end)
  if state.conn then state.conn:close() end
  state.conn = nil
  if not ok then error(err, 0) end
end

local BACKENDS = { postgres = PG, redis = RD }

local function refusal(name, srv, who)
  local s = string.format("lock: %s is held by %s on %s; another run is under way: wait for it " ..
    "to end (the lock is released when it does), or ask %s", name, describe_holder(who), srv.shown,
    who.operator or "its holder")
  if srv.backend == "redis" and who.expires_in then
    s = s .. string.format("; if that run is gone, the lock expires in %s (or DEL %s%s by hand)",
      ui.duration(who.expires_in), REDIS_PREFIX, name)
  end
  return s
end

-- ---- the global -------------------------------------------------------------

local function record_call(run, primitive, args, t0, ok, err, extra)
  if not run.rec then return end
  local fields = { primitive = primitive, args = args, outcome = ok and "ok" or "error",
    error = not ok and errors.message(err) or nil, duration = loop.now() - t0,
    step = run.step and run.step.id }
  for k, v in pairs(extra or {}) do fields[k] = v end
  run.rec:event("call", fields)
end

local function call_args(l)
  return { name = l.name, backend = l.srv.backend, server = l.srv.shown,
    ttl = l.srv.backend == "redis" and l.srv.ttl or nil }
end

-- A lock handle: one metatable for every run; a handle keeps its run.
local Lock = {}
Lock.__index = Lock

function Lock:release()
  if self.released then return end
  self.released = true
  local run = self.run
  if run.locks[self.name] == self then run.locks[self.name] = nil end
  if self.state == nil then return end          -- never taken, or lost
  local t0 = loop.now()
  local ok, err = pcall(BACKENDS[self.srv.backend].release, self.srv, self.state, self.name)
  record_call(run, "lock.release", call_args(self), t0, ok, err)
  if ok then
    ui.print("  " .. ui.style("dim", "lock released: " .. self.name))
  else
    ui.eprint("  " .. ui.style("yellow", "lock: releasing " .. self.name .. " failed: ") .. tostring(err))
  end
end
Lock.__close = Lock.release
Lock.__tostring = function(self)
  return string.format("lock %s on %s (%s)", self.name, self.srv.shown,
    self.released and "released" or (self.state and "held" or "not taken"))
end

-- Still ours?  Refresh or re-check it; take it again when it was lost and
-- is free; raise when another run holds it now.
local function check(l)
  if l.standin or l.released then return end
  local b = BACKENDS[l.srv.backend]
  local t0 = loop.now()
  if l.state and b.check(l.srv, l.state) then
    record_call(l.run, "lock.refresh", call_args(l), t0, true)
    return
  end
  -- A check cut short by Ctrl-C or a signal says nothing about the lock: keep it.
  if loop.interrupts() > 0 then
    errors.raise("interrupted", "lock: checking " .. l.name .. " " .. loop.interrupt_text(), { primitive = "lock" })
  end
  if l.state and l.srv.backend == "postgres" then pcall(b.release, l.srv, l.state, l.name) end
  l.state = nil
  local okt, state, who = pcall(b.take, l.srv, l.name, l.who)
  if okt and state then
    l.state = state
    record_call(l.run, "lock.refresh", call_args(l), t0, true, nil, { retaken = true })
    ui.log("warn", "lock " .. l.name .. " was lost (connection dropped or TTL ran out) and is taken again")
    return
  end
  local err = okt and errors.new("busy", string.format("lock: %s was lost (its TTL ran out or its " ..
    "connection dropped) and is now held by %s on %s: stop here and agree with %s who goes on", l.name,
    describe_holder(who), l.srv.shown, who.operator or "its holder"), { primitive = "lock", holder = who })
    or errors.from(state, "lock")
  record_call(l.run, "lock.refresh", call_args(l), t0, false, err)
  error(err, 0)
end

local function check_all(run)
  for _, l in pairs(run.locks) do check(l) end
end

local function release_all(run)
  -- A second Ctrl-C or a SIGTERM ends the run with the interrupt still
  -- counted, and every wait would end at once: forget it so the release
  -- can talk to the server (a further Ctrl-C still interrupts it).
  -- engine.finish does the same; a runbook's own l:release() may not.
  if loop.interrupts() > 0 then loop.ack_interrupt() end
  local names = {}
  for name in pairs(run.locks) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do run.locks[name]:release() end
end

-- The run's held locks, released when it ends; each step from now on (and
-- a retry of this one) starts by checking them: the engine calls
-- run.before_step at every attempt.
local function locks(run)
  if run.locks == nil then
    run.locks = {}
    run.cleanup[#run.cleanup + 1] = function() release_all(run) end
    run.before_step[#run.before_step + 1] = function() check_all(run) end
  end
  return run.locks
end

local function check_args(name, opts)
  local function usage(msg) errors.usage(msg, "lock") end
  if type(name) ~= "string" or name == "" then usage("lock: expected a lock name") end
  if opts ~= nil and type(opts) ~= "table" then usage("lock: options must be a table {wait=, ttl=, url=}") end
  opts = opts or {}
  if opts.wait ~= nil and (type(opts.wait) ~= "number" or opts.wait < 0) then
    usage("lock: wait must be a number of seconds >= 0")
  end
  if opts.url ~= nil and type(opts.url) ~= "string" then usage("lock: url must be a string") end
  return opts
end

local function server(run, opts)
  local okc, srv = pcall(choose_server, run, opts)
  if not okc then error(errors.from(srv, "lock", "usage"), 0) end
  return srv
end

-- Who holds it now, read for real (also in a dry run): the holder or false.
local function read_holder(run, name, srv)
  local ok, who = api.call(run, {
    primitive = "lock.check",
    args = { name = name, backend = srv.backend, server = srv.shown },
    mutating = false,
    describe = string.format("who holds lock %s on %s", name, srv.shown),
    perform = function() return BACKENDS[srv.backend].holder(srv, name) or false end,
    summary = function(w) return { held = w and true or false, holder = w or nil } end,
  })
  if not ok then error(who, 0) end
  return who
end

local function refused(name, srv, who)
  errors.raise("busy", refusal(name, srv, who), { primitive = "lock", holder = who })
end

local function take(l, opts)
  local b = BACKENDS[l.srv.backend]
  local deadline = loop.now() + (opts.wait or 0)
  local said = false
  while true do
    local state, who = b.take(l.srv, l.name, l.who)
    if state then return state end
    if loop.now() >= deadline then refused(l.name, l.srv, who) end
    if not said then
      ui.print("  " .. ui.style("yellow", "waiting") .. " for lock " .. l.name .. ", held by " ..
        describe_holder(who))
      said = true
    end
    loop.sleep(math.min(1, deadline - loop.now()))
  end
end

local function announce_taken(l)
  if l.run.dry_run then
    ui.print("  " .. ui.style("magenta", "would take lock") .. " " .. l.name .. " on " .. l.srv.shown ..
      ": free now (a dry run does not take it)")
  elseif l.state then
    ui.print("  " .. ui.style("green", "lock taken:") .. " " .. l.name .. " on " .. l.srv.shown ..
      " (released when the run ends)")
  end
end

local function acquire(name, opts)
  opts = check_args(name, opts)
  local run = context.need("lock")
  -- Held already: the same handle (each step boundary checks it).
  if locks(run)[name] then return run.locks[name] end
  local srv = server(run, opts)
  local l = setmetatable({ run = run, name = name, srv = srv, who = me(run) }, Lock)
  if run.dry_run then
    local who = read_holder(run, name, srv)
    if who then refused(name, srv, who) end
  end
  local ok, res = api.call(run, {
    primitive = "lock",
    args = call_args(l),
    mutating = true,
    describe = string.format("take lock %s on %s", name, srv.shown),
    stand_in = function() return { dry_run = true } end,
    perform = function() return { state = take(l, opts) } end,
    summary = function() return { holder = { operator = l.who.operator, host = l.who.host,
      since = l.who.since } } end,
  })
  if not ok then error(res, 0) end
  l.state = res.state
  l.standin = l.state == nil          -- a dry run's or a scenario's: never taken
  announce_taken(l)
  run.locks[name] = l
  return l
end

return setmetatable({
  -- lock.holder(name [, opts]) -> nil | {operator, host, since, ...}
  holder = function(name, opts)
    opts = check_args(name, opts)
    local run = context.need("lock.holder")
    return read_holder(run, name, server(run, opts)) or nil
  end,
  -- lock.held(name) -> the handle when this run holds it (or would, in a dry run)
  held = function(name)
    local run = context.run()
    return run and run.locks and run.locks[name]
  end,
}, {
  __call = function(_, name, opts)
    return acquire(name, opts)
  end,
})
