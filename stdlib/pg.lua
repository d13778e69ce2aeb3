-- pg: PostgreSQL diagnostics and dump helpers for runbooks.
--
--   local pg = require("pg")
--
-- Everything goes through the runbook's own primitives (sql, exec), so each
-- query and command is shown, recorded in the transcript and honours the
-- dry run: reads run for real (queries in a READ ONLY transaction,
-- readonly = true commands), pg.terminate and pg.cancel are simulated.
-- Functions take `db`, an open handle from pg.connect (or sql.connect);
-- what they read from the configuration (db, pg_bin) comes from the run's
-- target, or opts.target (docs/authoring.md, "The stdlib modules").
--
-- Diagnostics
--   local db = pg.connect(url, opts)      -- sql.connect(url, {quiet = true, ...opts}): rows are
--                                         -- shown by the runbook, not echoed per query;
--                                         -- url nil: the target's db
--   pg.connections(db)    -> { max = 100, total = 12, by_state = {
--                              {state = "active", n = 3}, {state = "idle in transaction", n = 1}, ...},
--                              by_database = { {datname = "app", state = "idle", n = 8}, ... } }
--   pg.long_running(db, {min_seconds = 60, limit = 20})
--                         -> { {pid=, usename=, datname=, application_name=, client=, state=,
--                               seconds=, wait=, query=}, ... }   longest first; not idle
--   pg.blocking(db)       -> { {blocked_pid=, blocked_user=, blocked_query=, blocked_seconds=,
--                               blocking_pid=, blocking_user=, blocking_state=, blocking_query=,
--                               blocking_seconds=}, ... }   one row per waiter/blocker pair
--                              (pg_blocking_pids)
--   pg.root_blockers(pairs) -> { pid, ... }  blockers that wait on nobody: the ones to act on
--   pg.database_sizes(db) -> { {datname=, bytes=, size="12 MB"}, ... }   largest first
--   pg.table_sizes(db, {limit = 10})
--                         -> { {relation="public.users", bytes=, size=, rows_estimate=,
--                               locked_by=}, ... }   largest first; a table another
--                              backend holds (or asks for) in ACCESS EXCLUSIVE mode
--                              first, with bytes = nil and locked_by = "123, 456"
--   pg.lockers(db, "public.users") -> "pid 123" | "pids 123, 456" | nil: who holds or
--                              asks for an ACCESS EXCLUSIVE lock on it
--   pg.backend(db, pid)   -> the pg_stat_activity row of one backend, or nil
--   pg.terminate(db, pid, {wait = 5}) -> gone, "terminated" | "still running" | "simulated"
--                            pg_terminate_backend, then waits up to `wait` s for the
--                            backend to exit; a dry run shows it and returns false, "simulated"
--   pg.cancel(db, pid)    -> pg_cancel_backend (cancels the query, keeps the session)
--
-- Dumps (pg_dump -Fc files)
--   pg.tool("pg_restore", opts) -> "/usr/lib/postgresql/15/bin/pg_restore"
--                                 (target.pg_bin, PATH, then /usr/lib/postgresql/<newest>/bin)
--   pg.dumps(dir, opts)        -> { {path=, name=, size=, mtime=}, ... } newest first | nil, why
--                                 the files matching opts.pattern (a Lua pattern, "%.dump$")
--   pg.newest_dump(dir, opts)  -> "/var/backups/postgres/app-2026-01-02.dump", mtime | nil, why
--   pg.read_dump(path)         -> true | false, pg_restore's message: reads the whole dump
--                                 (pg_restore --file=/dev/null), every data block included
--   pg.dump_tables(path)       -> { {schema="public", name="users", relation="public.users",
--                                   quoted='"public"."users"'}, ... }
--                                 the TABLE DATA entries of the table of contents (pg_restore -l);
--                                 `quoted` is safe in SQL text (pg.row_counts takes it)
--   pg.dump_row_counts(path)   -> { ["public.users"] = 3, ... }, { "public.users", ... }
--                                 rows per table in the dump's data (pg_restore --data-only,
--                                 counted as it streams: the data never sits in memory)
--   pg.row_counts(db, relations) -> { ["public.users"] = 3, ["public.gone"] = false },
--                                 { ["public.orders"] = "pid 123" }
--                                 count(*) per relation, false when it does not exist;
--                                 a relation whose lock did not come within
--                                 pg.LOCK_TIMEOUT is in the second table instead
--                                 (who holds it), not waited for
--   pg.compare_counts(want, have) -> { {relation=, want=, have=}, ... } the differences
--   pg.restore_args(url)       -> url without its password, { PGPASSWORD = ... }: give
--                                 pg_restore/pg_dump the password through the environment,
--                                 not argv (which every local user can read in ps)
--   pg.server(url)             -> "127.0.0.1:5432/app", for messages (no password)
local errors = require("runbook.errors")
local verbs = require("runbook.verbs")
local exec, poll, secret, target = verbs.exec, verbs.poll, verbs.secret, verbs.target
local sql = require("sql")

local csql = require("runbook.lazy")("runbook.sql")
local sys = require("runbook.sys")

local pg = {}

local function quiet_exec(spec)
  spec.quiet = true
  return exec(spec)
end

local function target_of(opts)
  return (opts and opts.target) or (type(target) == "table" and target) or {}
end

function pg.connect(url, opts)
  local o = { quiet = true }
  for k, v in pairs(opts or {}) do
    if k ~= "target" then o[k] = v end
  end
  url = url or target_of(opts).db
  if url == nil then
    errors.raise("usage", "pg.connect: no URL given and the target has no db; add db = env(\"...\") to it (docs/targets.md)", { primitive = "pg" })
  end
  local db = sql.connect(url, o)
  return db
end

function pg.server(url)
  local o = csql.parse(url)
  if o == nil then return "?" end
  return string.format("%s:%s/%s", o.host or o.hostaddr or "localhost", o.port or "5432",
    o.dbname or o.user or "?")
end

-- ---- diagnostics ------------------------------------------------------------

local CONNECTIONS_SQL = [[
select coalesce(state, 'unknown') as state, coalesce(datname, '') as datname, count(*) as n
from pg_stat_activity
where backend_type = 'client backend' and pid <> pg_backend_pid()
group by 1, 2 order by 3 desc, 1, 2]]

function pg.connections(db)
  local rows = db:query(CONNECTIONS_SQL)
  local max = db:query("select current_setting('max_connections')::int as max")[1].max
  local by_state, index, total = {}, {}, 0
  for _, r in ipairs(rows) do
    total = total + r.n
    if index[r.state] == nil then
      by_state[#by_state + 1] = { state = r.state, n = 0 }
      index[r.state] = by_state[#by_state]
    end
    index[r.state].n = index[r.state].n + r.n
  end
  table.sort(by_state, function(a, b) return a.n > b.n or (a.n == b.n and a.state < b.state) end)
  return { max = max, total = total, by_state = by_state, by_database = rows }
end

local LONG_SQL = [[
select pid, usename, datname, application_name, client_addr::text as client, state,
  extract(epoch from clock_timestamp() - coalesce(xact_start, query_start))::float8 as seconds,
  wait_event_type || ':' || wait_event as wait, left(query, 300) as query
from pg_stat_activity
where backend_type = 'client backend' and pid <> pg_backend_pid() and state <> 'idle'
  and coalesce(xact_start, query_start) < clock_timestamp() - make_interval(secs => $1::float8)
order by seconds desc limit $2::int]]

function pg.long_running(db, opts)
  opts = opts or {}
  return db:query(LONG_SQL, opts.min_seconds or 60, opts.limit or 20)
end

local BLOCKING_SQL = [[
select w.pid as blocked_pid, w.usename as blocked_user, left(w.query, 300) as blocked_query,
  extract(epoch from clock_timestamp() - w.query_start)::float8 as blocked_seconds,
  b.pid as blocking_pid, b.usename as blocking_user, b.state as blocking_state,
  left(b.query, 300) as blocking_query,
  extract(epoch from clock_timestamp() - coalesce(b.xact_start, b.query_start))::float8 as blocking_seconds
from pg_stat_activity w
cross join lateral unnest(pg_blocking_pids(w.pid)) as bp(pid)
join pg_stat_activity b on b.pid = bp.pid
where w.wait_event_type = 'Lock'
order by blocked_seconds desc, w.pid, b.pid]]

function pg.blocking(db)
  return db:query(BLOCKING_SQL)
end

function pg.root_blockers(pairs_)
  local blocked, roots, seen = {}, {}, {}
  for _, r in ipairs(pairs_) do blocked[r.blocked_pid] = true end
  for _, r in ipairs(pairs_) do
    local b = r.blocking_pid
    if not blocked[b] and not seen[b] then
      seen[b] = true
      roots[#roots + 1] = b
    end
  end
  return roots
end

function pg.database_sizes(db)
  return db:query([[
select datname, pg_database_size(datname) as bytes, pg_size_pretty(pg_database_size(datname)) as size
from pg_database where datallowconn order by 2 desc]])
end

-- Diagnostic queries must not queue behind the lock they are diagnosing:
-- sizes and counts need an ACCESS SHARE lock, which waits behind any
-- ACCESS EXCLUSIVE lock held or asked for (LOCK TABLE, ALTER TABLE, a
-- VACUUM FULL).  They run in a transaction whose lock_timeout is this.
pg.LOCK_TIMEOUT = "2s"

-- Runs fn(db) in a transaction with lock_timeout = pg.LOCK_TIMEOUT (a dry
-- run's db:tx is READ ONLY; set_config is a read).  Returns true, fn's
-- result, or false when the lock timeout fired.
local function without_waiting(db, fn)
  local ok, res = pcall(db.tx, db, function(tx)
    tx:query("select set_config('lock_timeout', $1, true) as v", pg.LOCK_TIMEOUT)
    return fn(tx)
  end)
  if ok then return true, res end
  if tostring(res):find("SQLSTATE 55P03", 1, true) then return false end
  error(res, 0)
end

-- Per relation: the pids of other backends holding or asking for an
-- ACCESS EXCLUSIVE lock on it, on one of its indexes or on its TOAST table.
local LOCKED_CTE = [[
with ax as (
  select l.relation, l.pid from pg_locks l
  where l.locktype = 'relation' and l.mode = 'AccessExclusiveLock' and l.pid <> pg_backend_pid()
    and l.database = (select oid from pg_database where datname = current_database())
), locked as (
  select coalesce(i.indrelid, t.oid, ax.relation) as rel,
    string_agg(distinct ax.pid::text, ', ') as pids
  from ax left join pg_index i on i.indexrelid = ax.relation
    left join pg_class t on t.reltoastrelid = ax.relation
  group by 1
)
]]

-- measure = false: no size at all (the last resort when a lock keeps
-- being taken between the check and the measure).
local function table_sizes_sql(measure)
  local size = measure and "case when k.pids is null then pg_total_relation_size(c.oid) end"
    or "null::int8"
  return LOCKED_CTE .. string.format([[
select relation, bytes, pg_size_pretty(bytes) as size, rows_estimate, locked_by from (
  select format('%%I.%%I', n.nspname, c.relname) as relation, %s as bytes,
    greatest(c.reltuples, 0)::int8 as rows_estimate, k.pids as locked_by
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
    left join locked k on k.rel = c.oid
  where c.relkind in ('r', 'p', 'm') and n.nspname not in ('pg_catalog', 'information_schema')
    and n.nspname !~ '^pg_toast'
) s order by bytes desc nulls first, relation limit $1::int]], size)
end

function pg.table_sizes(db, opts)
  opts = opts or {}
  local limit = opts.limit or 10
  for _ = 1, 2 do
    local ok, rows = without_waiting(db, function(tx) return tx:query(table_sizes_sql(true), limit) end)
    if ok then return rows end
  end
  return db:query(table_sizes_sql(false), limit)
end

-- "pid 123" / "pids 123, 456" holding or asking for an ACCESS EXCLUSIVE
-- lock on relation (a schema.table name), or nil.
function pg.lockers(db, relation)
  local r = db:query(LOCKED_CTE .. "select pids from locked where rel = to_regclass($1)", relation)[1]
  if r == nil or r.pids == nil then return nil end
  return (r.pids:find(",", 1, true) and "pids " or "pid ") .. r.pids
end

function pg.backend(db, pid)
  return db:query([[
select pid, usename, datname, application_name, client_addr::text as client, state,
  extract(epoch from clock_timestamp() - coalesce(xact_start, query_start))::float8 as seconds,
  left(query, 300) as query
from pg_stat_activity where pid = $1::int]], pid)[1]
end

local function check_pid(fname, pid)
  if math.type(tonumber(pid)) ~= "integer" then
    errors.raise("usage", string.format("pg.%s: expected a backend pid (an integer), got %s", fname, tostring(pid)), { primitive = "pg" })
  end
  return math.tointeger(tonumber(pid))
end

-- pg_terminate_backend goes through db:exec: it changes the world, so a
-- dry run must simulate it (in db:query's READ ONLY transaction it would
-- still run: READ ONLY stops writes, not signals).
function pg.terminate(db, pid, opts)
  pid = check_pid("terminate", pid)
  opts = opts or {}
  local _, tag = db:exec("select pg_terminate_backend($1::int)", pid)
  if tag == nil or tag == "" then return false, "simulated" end   -- a dry run's stand-in
  local gone = false
  local ok = pcall(poll, function()
    gone = pg.backend(db, pid) == nil
    return gone
  end, { every = 0.1, timeout = opts.wait or 5, what = "backend " .. pid .. " to exit" })
  if ok and gone then return true, "terminated" end
  return false, "still running"
end

function pg.cancel(db, pid)
  pid = check_pid("cancel", pid)
  db:exec("select pg_cancel_backend($1::int)", pid)
end

-- ---- tools and dumps --------------------------------------------------------

local function is_file(path)
  local st = sys.stat(path)
  return st ~= nil and st.type == "file"
end

-- Debian's /usr/bin/pg_restore is a Perl wrapper (pg_wrapper) that costs
-- a Perl start and picks a version by its own rules: prefer the real
-- binaries under /usr/lib/postgresql/<version>/bin when the one on PATH is
-- that wrapper.
local function newest_pg_bin(name)
  local best, best_v
  for _, v in ipairs(sys.listdir("/usr/lib/postgresql") or {}) do
    local n = tonumber(v)
    local path = "/usr/lib/postgresql/" .. v .. "/bin/" .. name
    if n and is_file(path) and (best_v == nil or n > best_v) then best, best_v = path, n end
  end
  return best
end

function pg.tool(name, opts)
  local t = target_of(opts)
  if t.pg_bin and is_file(t.pg_bin .. "/" .. name) then return t.pg_bin .. "/" .. name end
  local wrapper
  for dir in (os.getenv("PATH") or ""):gmatch("[^:]+") do
    local path = dir .. "/" .. name
    if is_file(path) then
      local real = sys.realpath(path) or path
      if not real:match("pg_wrapper$") then return path end
      wrapper = wrapper or path
    end
  end
  local found = newest_pg_bin(name) or wrapper
  if found then return found end
  errors.raise("failed", string.format("pg: %s not found on PATH nor in /usr/lib/postgresql/*/bin (install the " ..
    "PostgreSQL client, e.g. postgresql-client-15, or set pg_bin = \"/path/to/bin\" in the target)",
    name), { primitive = "pg" })
end

function pg.dumps(dir, opts)
  local pattern = (opts and opts.pattern) or "%.dump$"
  local names = sys.listdir(dir)
  if names == nil then return nil, string.format("cannot read the backup directory %s", dir) end
  local list = {}
  for _, f in ipairs(names) do
    if f:match(pattern) then
      local st = sys.stat(dir .. "/" .. f)
      if st and st.type == "file" then
        list[#list + 1] = { path = dir .. "/" .. f, name = f, size = st.size, mtime = st.mtime }
      end
    end
  end
  if #list == 0 then return nil, string.format("no file matching %s in %s", pattern, dir) end
  table.sort(list, function(a, b) return a.mtime > b.mtime or (a.mtime == b.mtime and a.name > b.name) end)
  return list
end

function pg.newest_dump(dir, opts)
  local list, why = pg.dumps(dir, opts)
  if list == nil then return nil, why end
  return list[1].path, list[1].mtime
end

-- pg_restore writing the whole script to /dev/null reads the table of
-- contents and every data block: a dump cut short or corrupted half way
-- fails here, before anything is stopped, instead of in the restore.
function pg.read_dump(path)
  local r = quiet_exec { pg.tool("pg_restore"), "--file=/dev/null", path, readonly = true,
    check = false, timeout = 3600 }
  if r.code == 0 then return true end
  local why = (r.stderr or ""):gsub("%s+$", "")
  return false, why ~= "" and why or string.format("pg_restore exited with code %d", r.code)
end

-- A relation name as pg_dump prints it: schema.table, each part bare or
-- "quoted" (with "" for a quote), so it is safe in SQL text as it is.
-- ident_end returns the position after the identifier at pos, or nil.
local function ident_end(s, pos)
  if s:sub(pos, pos) ~= '"' then
    local _, e = s:find("^[%a_][%w_$]*", pos)
    return e and e + 1
  end
  local i = pos + 1
  while i <= #s do
    if s:sub(i, i) ~= '"' then
      i = i + 1
    elseif s:sub(i + 1, i + 1) == '"' then
      i = i + 2
    else
      return i + 1
    end
  end
  return nil
end

-- The end of the schema.table starting at pos, or nil.
local function qualified_end(s, pos)
  local e = ident_end(s, pos)
  if e == nil or s:sub(e, e) ~= "." then return nil end
  return ident_end(s, e + 1)
end

local function qualified_ok(s)
  return qualified_end(s, 1) == #s + 1
end

function pg.dump_tables(path)
  local r = quiet_exec { pg.tool("pg_restore"), "--list", path, readonly = true, timeout = 120 }
  local out = {}
  for line in r.stdout:gmatch("[^\n]+") do
    local schema, name = line:match("^%d+; %d+ %d+ TABLE DATA (%S+) (.+) %S+$")
    if schema then
      local function q(id) return '"' .. id:gsub('"', '""') .. '"' end
      out[#out + 1] = { schema = schema, name = name, relation = schema .. "." .. name,
        quoted = q(schema) .. "." .. q(name) }
    end
  end
  return out
end

-- awk counts the lines between each "COPY rel (cols) FROM stdin;" and its
-- "\." as pg_restore writes them, printing "N<tab>the COPY line"; a nonce
-- line carries pg_restore's exit status through the pipe (sh has no
-- pipefail).  The relation is read back from the COPY line here, where a
-- quoted name with blanks is parsed as SQL would.
local COUNT_AWK = '$0 == m { getline; print "!exit " $0; next } ' ..
  '!c && /^COPY / { l = $0; n = 0; c = 1; next } ' ..
  'c && $0 == "\\\\." { print n "\\t" l; c = 0; next } c { n++ }'

function pg.dump_row_counts(path)
  local mark = "rb-exit-" .. sys.random_hex(8)
  local script = '{ "$1" --data-only --file=- "$2"; rc=$?; echo "$3"; echo $rc; } | awk -v m="$3" \'' ..
    COUNT_AWK .. "'"
  local r = quiet_exec { "sh", "-c", script, "sh", pg.tool("pg_restore"), path, mark,
    readonly = true, timeout = 3600 }
  local counts, order, status = {}, {}, nil
  for line in r.stdout:gmatch("[^\n]+") do
    local code = line:match("^!exit (%d+)$")
    local n, copy = line:match("^(%d+)\t(COPY .*)$")
    if code then
      status = tonumber(code)
    elseif n then
      local e = qualified_end(copy, 6)
      if e then
        local rel = copy:sub(6, e - 1)
        if counts[rel] == nil then order[#order + 1] = rel end
        counts[rel] = (counts[rel] or 0) + tonumber(n)
      end
    end
  end
  if status ~= 0 then
    errors.raise("failed", string.format("pg: reading the data of %s failed (pg_restore exit %s): %s", path,
      tostring(status), (r.stderr:gsub("%s+$", ""))), { primitive = "pg" })
  end
  return counts, order
end

-- count(*) of each relation in one transaction under lock_timeout; nil
-- when a lock was taken after the pg_locks check (then one by one).
local function count_all(db, rels)
  local ok, res = without_waiting(db, function(tx)
    local n = {}
    for _, rel in ipairs(rels) do n[rel] = tx:query("select count(*) as n from " .. rel)[1].n end
    return n
  end)
  return ok and res or nil
end

function pg.row_counts(db, relations)
  local out, locked, free = {}, {}, {}
  for _, rel in ipairs(relations) do
    if not qualified_ok(rel) then errors.raise("usage", string.format("pg.row_counts: %q is not a schema.table name", rel), { primitive = "pg" }) end
    local exists = db:query("select to_regclass($1) is not null as ok", rel)[1].ok
    local who = exists and pg.lockers(db, rel)
    if not exists then
      out[rel] = false
    elseif who then
      locked[rel] = who
    else
      free[#free + 1] = rel
    end
  end
  local n = #free > 0 and count_all(db, free)
  for _, rel in ipairs(free) do
    local one = n or count_all(db, { rel })
    if one then
      out[rel] = one[rel]
    else
      locked[rel] = pg.lockers(db, rel) or "another session"
    end
  end
  return out, locked
end

function pg.compare_counts(want, have)
  local diffs = {}
  local rels = {}
  for rel in pairs(want) do rels[#rels + 1] = rel end
  table.sort(rels)
  for _, rel in ipairs(rels) do
    if have[rel] ~= want[rel] then diffs[#diffs + 1] = { relation = rel, want = want[rel], have = have[rel] } end
  end
  return diffs
end

-- The URL (or key=value string) without its password, and the password
-- for PGPASSWORD (marked secret).
function pg.restore_args(url)
  local o = csql.parse(url)
  local password = o and o.password
  local env = {}
  if password and password ~= "" then
    env.PGPASSWORD = secret(password)
    url = url:gsub("^(%a[%w+.-]*://[^:/@?#]*):[^@/]*@", "%1@")
    url = url:gsub("([?&])password=[^&]*&?", "%1"):gsub("[?&]$", "")
    url = url:gsub("%f[%w_]password%s*=%s*'[^']*'%s*", ""):gsub("%f[%w_]password%s*=%s*%S+%s*", "")
  end
  return url, env
end

return pg
