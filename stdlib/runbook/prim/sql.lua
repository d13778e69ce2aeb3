-- runbook.prim.sql: the `sql` global (DESIGN.md) on src/lib_sql.c.
--
--   local db = sql.connect(url [, opts])
--       url: postgresql://user:password@host:port/dbname?sslmode=... or a
--       "key=value ..." string.  opts: timeout (per call, default 30 s; on
--       expiry the statement is cancelled on the server), connect_timeout
--       (default the URL's connect_timeout, else 5 s), statement_timeout
--       (seconds, enforced by the server), quiet (do not echo statements).
--   db:query(sql, ... [, opts]) -> rows    an array of rows keyed by column
--       name: int2/int4/int8/oid integers, float4/float8/numeric numbers,
--       bool booleans, NULL nil, everything else text.  At most
--       opts.max_rows rows (default 100000) and opts.max_bytes bytes of
--       values (default 64 MiB) are kept: past either, the rest is counted,
--       not kept, rows.truncated is true, rows.total the statement's row
--       count, and the operator sees (and the transcript records) a warning
--   db:each(sql, ..., fn) -> n    fn(row) for every row as it arrives, read
--       a batch at a time (memory stays flat); fn returning false stops it;
--       returns the number of rows fn saw
--   db:exec(sql, ...) -> n, tag   affected rows and the command tag ("UPDATE 3");
--       without parameters, sql may be a script of several statements (run
--       as one implicit transaction; n and tag are the last one's)
--   db:query{sql, params..., secret = true}, db:exec{...}: the table form
--       takes options (NULL parameters need the form above).  secret = true:
--       the result is a secret: each string and number cell is marked before
--       anything is recorded, the record holds the row count only, the
--       server's notices are not shown, and a failure says the SQLSTATE
--       without the server's message (which may quote a value)
--   db:tx(fn) -> fn's results     BEGIN; fn(db); COMMIT -- or ROLLBACK and
--       re-raise; nested db:tx uses a savepoint
--   db:close()                    also `local db <close> = sql.connect(...)`
--
-- $1..$n parameters are always sent bound, never spliced into the text.
--
-- Connections are kept for the whole run in a pool per URL
-- (run.sql_pools): connecting in every step costs one connection, and
-- concurrent calls (parallel) each get their own.  The run closes them all
-- at its end (run.cleanup).
--
-- Dry run: db:query runs for real inside BEGIN READ ONLY ... ROLLBACK, so
-- the server itself refuses a write; db:exec is shown and recorded as
-- "would run" and returns 0; db:tx runs its function in one READ ONLY
-- transaction and rolls it back.
local api = require("runbook.api")
local context = require("runbook.context")
local csql = require("runbook.lazy")("runbook.sql")
local errors = require("runbook.errors")
local record = require("runbook.record")
local ui = require("runbook.ui")
local urls = require("runbook.url")

local DEFAULT_TIMEOUT, DEFAULT_CONNECT_TIMEOUT = 30, 5
-- What db:query keeps: 2 million rows of a few columns took 632 MB before.
local DEFAULT_MAX_ROWS, DEFAULT_MAX_BYTES = 100000, 64 * 1024 * 1024
local EACH_BATCH = 1000       -- rows db:each reads at a time
local NO_PARAMS = { n = 0 }

-- "BEGIN READ ONLY" alone would still let the transaction's first statement
-- be SET TRANSACTION READ WRITE; a query right after it takes the snapshot
-- that forbids that switch.
local BEGIN_READ_ONLY = "BEGIN READ ONLY; SELECT 1"

-- The URL with its password replaced by ***, for the screen, the
-- transcript and error messages.
local function redact_url(url, password)
  local s = urls.redact(url)
  s = s:gsub("(%f[%w_]password%s*=%s*)'[^']*'", "%1***")
  s = s:gsub("(%f[%w_]password%s*=%s*)[^%s'*][^%s]*", "%1***")
  if password and password ~= "" then
    local out, i = {}, 1
    while true do
      local a, b = s:find(password, i, true)
      if not a then break end
      out[#out + 1] = s:sub(i, a - 1) .. "***"
      i = b + 1
    end
    out[#out + 1] = s:sub(i)
    s = table.concat(out)
  end
  return s
end

local function one_line(sql, max)
  local s = sql:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")
  if #s > max then s = s:sub(1, max - 3) .. "..." end
  return s
end

-- What libpq says about a failed connection, without its per-attempt
-- prefixes and the repeat sslmode=prefer's second attempt adds.
local function libpq_reason(msg)
  msg = (msg or ""):gsub('connection to server at "[^"]*" %([^)]*%), port %d+ failed: ', "")
  msg = msg:gsub('connection to server at "[^"]*", port %d+ failed: ', "")
  msg = msg:gsub('connection to server on socket "[^"]*" failed: ', "")
  msg = msg:match("^%s*([^\n]*)") or ""
  return (msg:gsub("^FATAL:%s+", ""):gsub("%s+$", ""))
end

local function addr(f)
  return string.format("%s:%s", f.host or "localhost", f.port or "5432")
end

-- The kind and message of a connection that failed: one per cause, each
-- saying what to check.
local function connect_message(f, h)
  local where, raw = addr(f), (f.message or ""):lower()
  local reason = libpq_reason(f.message)
  if f.wake == "timeout" then
    return "timeout", string.format("sql: connection to %s timed out after %.1f s (the server accepted " ..
      "nothing or did not answer: is this the PostgreSQL port? check the host, port and " ..
      "firewalls, or raise connect_timeout)", where, h.connect_timeout)
  elseif f.wake == "interrupt" then
    return "interrupted", string.format("sql: connection to %s %s", where, require("runbook.loop").interrupt_text())
  elseif f.wake == "cancel" then
    return "timeout", string.format("sql: connection to %s stopped: the step's timeout ran out", where)
  elseif raw:find("could not translate host name", 1, true) then
    return "resolve", string.format("sql: cannot resolve host name %q (check the host in the URL or " ..
      "--target, and DNS): %s", f.host or "?", reason)
  elseif raw:find("connection refused", 1, true) then
    return "refused", string.format("sql: connection to %s refused after %.1f s (is PostgreSQL running? " ..
      "check the host and port in the URL, or --target)", where, f.elapsed or 0)
  elseif raw:find("password authentication failed", 1, true) or raw:find("authentication failed", 1, true)
      or raw:find("no password supplied", 1, true) then
    return "auth", string.format("sql: authentication failed for user %q at %s (check the password " ..
      "in the URL or ~/.pgpass, and the user's pg_hba.conf method)", f.user or "?", where)
  elseif raw:find('database ".-" does not exist') then
    return "server", string.format("sql: database %q does not exist on %s (check the database name " ..
      "in the URL; \\l in psql lists them)", f.db or "?", where)
  elseif raw:find("no pg_hba.conf entry", 1, true) then
    return "auth", string.format("sql: %s does not accept user %q for database %q from this host " ..
      "(no pg_hba.conf entry; check pg_hba.conf on the server, or sslmode)", where,
      f.user or "?", f.db or "?")
  elseif raw:find("ssl", 1, true) or raw:find("certificate", 1, true) or raw:find("tls", 1, true) then
    return "tls", string.format("sql: TLS failure connecting to %s: %s (check sslmode, sslrootcert " ..
      "and the server's certificate)", where, reason)
  elseif raw:find("too many clients", 1, true) or raw:find("connection slots", 1, true) then
    return "busy", string.format("sql: %s has no free connection slots: %s (check max_connections " ..
      "and who holds connections in pg_stat_activity)", where, reason)
  end
  return "error", string.format("sql: connection to %s failed: %s", where, reason)
end

-- A hint for the server errors an operator meets most; the server's own
-- message comes first in any case.
local SQLSTATE_HINTS = {
  ["42601"] = "check the SQL text",
  ["42P01"] = "check the table name, its schema, and that the URL names the right database",
  ["42703"] = "check the column names",
  ["42501"] = "check the privileges of the URL's user",
  ["57014"] = "the server's statement_timeout or a cancel stopped it",
  ["40P01"] = "deadlock: retry the step",
  ["40001"] = "serialization failure: retry the step",
}

local function server_message(f, verb, dry_run, secret)
  if secret then
    return string.format("sql: %s on %s failed (SQLSTATE %s%s; the server's message is not shown: " ..
      "secret = true)", verb, f.who, f.sqlstate or "?",
      SQLSTATE_HINTS[f.sqlstate] and ("; " .. SQLSTATE_HINTS[f.sqlstate]) or "")
  end
  local parts = { string.format("sql: %s on %s failed: %s", verb, f.who, f.message or "?") }
  if f.position then parts[#parts + 1] = string.format(" at character %s", f.position) end
  parts[#parts + 1] = string.format(" (SQLSTATE %s", f.sqlstate or "?")
  if f.sqlstate == "25006" and dry_run then
    parts[#parts + 1] = "; dry run: db:query runs in a READ ONLY transaction, write with " ..
      "db:exec, which a dry run simulates"
  elseif SQLSTATE_HINTS[f.sqlstate] then
    parts[#parts + 1] = "; " .. SQLSTATE_HINTS[f.sqlstate]
  end
  parts[#parts + 1] = ")"
  if f.detail then parts[#parts + 1] = "; detail: " .. f.detail end
  if f.hint then parts[#parts + 1] = "; hint: " .. f.hint end
  return table.concat(parts)
end

local function failure_message(f, verb, dry_run, secret)
  local k = f.kind
  local cancelled = f.cancelled and "; the statement was cancelled on the server"
    or "; the server did not confirm the cancel, so the connection was closed (the next call reconnects)"
  if k == "server" then
    return server_message(f, verb, dry_run, secret)
  elseif k == "timeout" then
    return string.format("sql: %s on %s timed out after %.1f s%s (raise timeout= in " ..
      "sql.connect, or look for locks in pg_stat_activity)", verb, f.who, f.timeout, cancelled)
  elseif k == "interrupt" then
    return string.format("sql: %s on %s %s%s", verb, f.who, require("runbook.loop").interrupt_text(),
      cancelled)
  elseif k == "cancel" then
    return string.format("sql: %s on %s stopped: the step's timeout ran out%s", verb, f.who, cancelled)
  elseif k == "lost" then
    return string.format("sql: connection to %s lost during %s: %s (check the server and " ..
      "its log; the next call reconnects)", f.who, verb, libpq_reason(f.message))
  end
  return string.format("sql: %s on %s: %s", verb, f.who, f.message or k)
end

-- Parameters as the transcript shows them: NULL as "(null)" (a nil would
-- vanish from the JSON); secret() values are redacted by the recorder.
local function record_params(params)
  if params.n == 0 then return nil end
  local out = {}
  for i = 1, params.n do
    local v = params[i]
    if v == nil then out[i] = "(null)" else out[i] = v end
  end
  return out
end

local function check_timeout(name, v)
  if v ~= nil and (type(v) ~= "number" or v <= 0) then
    return string.format("sql.connect: %s must be a positive number of seconds", name)
  end
end

-- Argument checks of db:query/db:each/db:exec: pure, no run involved.
local QUERY_OPTS = { max_rows = true, max_bytes = true }

-- The statement, its parameters and options of db:query/db:exec, in
-- either form: (sql, ...) or {sql, params..., secret = true}.  Returns
-- nil and a message on misuse.
local function call_args(method, first, ...)
  local params, opts = table.pack(...), {}
  if type(first) == "table" then
    for k, v in pairs(first) do
      if type(k) ~= "number" then
        if k ~= "secret" and not (method == "query" and QUERY_OPTS[k]) then
          return nil, string.format("sql: db:%s: unknown option %q (the table form takes secret=%s)",
            method, tostring(k), method == "query" and ", max_rows=, max_bytes=" or "")
        end
        opts[k] = v
      end
    end
    if opts.secret ~= nil and type(opts.secret) ~= "boolean" then
      return nil, string.format("sql: db:%s: secret must be true or false", method)
    end
    params = table.pack(table.unpack(first, 2, #first))
    first = first[1]
  end
  if type(first) ~= "string" or first == "" then
    return nil, string.format("sql: db:%s expects an SQL string, then its $1..$n parameters " ..
      "(or a table {sql, params..., secret = true})", method)
  end
  return first, params, opts
end

-- A trailing table of named options after a query's parameters (a
-- parameter is never a table; an empty or array-like one stays a bad
-- parameter, so its error names it).
local function trailing_opts(params)
  local t = params.n > 0 and params[params.n]
  if type(t) ~= "table" or next(t) == nil then return nil end
  for k in pairs(t) do
    if type(k) ~= "string" then return nil end
  end
  params[params.n], params.n = nil, params.n - 1
  return t
end

-- named: the table form's options (secret=, max_rows=, max_bytes=).
local function query_caps(params, named)
  local opts = trailing_opts(params) or {}
  for k, v in pairs(named) do if k ~= "secret" then opts[k] = v end end
  for k in pairs(opts) do
    if not QUERY_OPTS[k] then
      return nil, string.format("sql: db:query has no option %q (max_rows, max_bytes)", k)
    end
  end
  local caps = { max_rows = opts.max_rows or DEFAULT_MAX_ROWS, max_bytes = opts.max_bytes or DEFAULT_MAX_BYTES,
    secret = named.secret }
  for k, v in pairs(caps) do
    if k ~= "secret" and (math.type(v) ~= "integer" or v < 0) then
      return nil, string.format("sql: db:query option %s must be a non-negative integer", k)
    end
  end
  return caps
end

local function check_sql(method, sql)
  if type(sql) ~= "string" or sql == "" then
    return string.format("sql: db:%s expects an SQL string, then its $1..$n parameters", method)
  end
end

-- The error object of a failed statement (f: lib_sql.c's facts).
local FACT_KINDS = { server = "server", timeout = "timeout", interrupt = "interrupted", cancel = "timeout",
  lost = "lost" }

local function failure(f, verb, dry_run, secret)
  return errors.new(FACT_KINDS[f.kind] or "error", failure_message(f, verb, dry_run, secret),
    { sqlstate = f.sqlstate })
end

-- Pools ------------------------------------------------------------------
local function close_pool(pool)
  for conn in pairs(pool.all) do conn:close() end
  pool.all, pool.idle = {}, {}
end

-- The run's pools, closed when it ends.
local function pools(run)
  if run.sql_pools == nil then
    run.sql_pools = {}
    run.cleanup[#run.cleanup + 1] = function()
      for _, pool in pairs(run.sql_pools or {}) do close_pool(pool) end
      run.sql_pools = nil
    end
  end
  return run.sql_pools
end

local function get_pool(run, url, statement_timeout, parsed)
  local key = url .. "\0" .. tostring(statement_timeout or "")
  local all = pools(run)
  local pool = all[key]
  if pool == nil then
    pool = { url = url, display = redact_url(url, parsed.password), statement_timeout = statement_timeout,
      idle = {}, all = {}, pins = setmetatable({}, { __mode = "k" }) }
    all[key] = pool
  end
  return pool
end

local function open_conn(h)
  local pool = h.pool
  local conn, f = csql.connect(pool.url, h.connect_timeout)
  if conn == nil then
    local kind, msg = connect_message(f, h)
    errors.raise(kind, msg, { primitive = "sql.connect" })
  end
  pool.all[conn] = true
  if pool.statement_timeout then
    local ok, tag = conn:query("select set_config('statement_timeout', $1, false)",
      { n = 1, string.format("%d", math.ceil(pool.statement_timeout * 1000)) }, h.timeout)
    if ok == nil then
      conn:close()
      pool.all[conn] = nil
      error(failure(tag, "setting statement_timeout", h.run.dry_run), 0)
    end
  end
  return conn
end

-- The connection for a call: the one a db:tx of this coroutine holds,
-- else an idle one, else a new one.  Returns conn, pinned, reused.
local function acquire(h)
  local pool = h.pool
  local pin = pool.pins[coroutine.running()]
  if pin then
    if pin.conn:status() ~= "ok" then
      errors.raise("lost", string.format("sql: the connection to %s was lost inside db:tx; the server " ..
        "rolled the transaction back, and nothing after BEGIN is committed", h.url), { primitive = "sql.tx" })
    end
    return pin.conn, true, true
  end
  while #pool.idle > 0 do
    local conn = table.remove(pool.idle)
    if conn:status() == "ok" then return conn, false, true end
    conn:close()
    pool.all[conn] = nil
  end
  return open_conn(h), false, false
end

local function release(pool, conn)
  if conn:status() == "ok" and conn:txstatus() == "idle" then
    pool.idle[#pool.idle + 1] = conn
  else
    conn:close()
    pool.all[conn] = nil
  end
end

-- Calls --------------------------------------------------------------------
-- A handle: one metatable for every run; a handle keeps the run that made it.
local Handle = {}
Handle.__index = Handle

local function show_notices(notices)
  for _, n in ipairs(notices or {}) do ui.print("  " .. ui.style("dim", "sql: " .. n)) end
end

-- Run one statement on conn in mode "rows" | "exec" | "simple"; raise a
-- worded error on failure.  extra: {secret=, max_rows=, max_bytes=}; a
-- secret statement's notices are not shown.
local function run_on(h, conn, verb, sql, params, mode, extra)
  local secret = extra and extra.secret
  local value, tag, notices, cut = conn:query(sql, params, h.timeout, mode,
    extra and extra.max_rows, extra and extra.max_bytes)
  if value == nil then
    if not secret then show_notices(tag.notices) end
    error(failure(tag, verb, h.run.dry_run, secret), 0)
  end
  if not secret then show_notices(notices) end
  return { value = value, tag = tag, notices = notices, cut = cut }
end

-- db:each's statement: rows read EACH_BATCH at a time and handed to fn;
-- a stop (fn returned false or raised) reads the rest without keeping it,
-- so the connection is ready for the next call.
local function stream_on(h, conn, sql, params, fn)
  local started, f = conn:query(sql, params, h.timeout, "stream")
  if started == nil then error(failure(f, "query", h.run.dry_run), 0) end
  local count = 0
  while true do
    local rows, finished, tag, notices = conn:fetch(EACH_BATCH, h.timeout)
    if rows == nil then
      show_notices(finished.notices)
      error(failure(finished, "query", h.run.dry_run), 0)
    end
    for i = 1, #rows do
      count = count + 1
      local ok, more = pcall(fn, rows[i])
      if not ok or more == false then
        if not finished then conn:fetch(1, h.timeout, true) end
        if not ok then error(errors.carry(more), 0) end   -- fn's error, as it raised it
        return { value = count, tag = "", stopped = true }
      end
    end
    if finished then
      show_notices(notices)
      return { value = count, tag = tag, notices = notices }
    end
  end
end

local function perform(h, verb, sql, params, extra)
  if not h.quiet then ui.print("  " .. ui.style("dim", "sql> " .. one_line(sql, 160))) end
  local conn, pinned = acquire(h)
  local readonly = h.run.dry_run and verb ~= "exec" and conn:txstatus() == "idle"
  local ok, res = true, nil
  if readonly then ok, res = pcall(run_on, h, conn, verb, BEGIN_READ_ONLY, NO_PARAMS, "simple") end
  if ok and verb == "each" then
    ok, res = pcall(stream_on, h, conn, sql, params, extra.fn)
  elseif ok then
    ok, res = pcall(run_on, h, conn, verb, sql, params, verb == "exec" and "exec" or "rows", extra)
  end
  if readonly and conn:status() == "ok" and conn:txstatus() ~= "idle" then
    pcall(run_on, h, conn, verb, "ROLLBACK", NO_PARAMS, "simple")
  end
  if not pinned then release(h.pool, conn) end
  if not ok then error(res, 0) end
  return res
end

-- A --scenario result: {rows = {...}} (or the rows themselves) for a
-- query, {affected = n, tag = "UPDATE n"} for an exec.
local function complete(verb, extra, r)
  if verb == "query" then return { value = r.rows or r, tag = r.tag or "" } end
  if verb == "each" then
    local rows, n = r.rows or r, 0
    for i = 1, #rows do
      n = i
      if extra.fn(rows[i]) == false then break end
    end
    return { value = n, tag = r.tag or "" }
  end
  return { value = math.tointeger(r.affected) or 0, tag = r.tag or "" }
end

local function summary(verb, secret, r)
  local s = { notices = not secret and r.notices or nil, tag = r.tag ~= "" and r.tag or nil,
    notice_count = secret and r.notices and #r.notices or nil }
  if verb == "query" then s.rows = #r.value
  elseif verb == "each" then s.rows, s.stopped = r.value, r.stopped
  else s.affected = r.value end
  if r.cut then s.truncated, s.rows_total, s.bytes_kept = true, r.cut.total, r.cut.bytes end
  return s
end

-- What api.call asks of a statement's spec, made once rather than as
-- closures on every call.
local PRIMITIVE = { query = "sql.query", each = "sql.each", exec = "sql.exec" }
local function spec_describe(c)
  return string.format("sql %s on %s: %s", c.verb, c.h.url, one_line(c.sql, 200))
end
local function spec_stand_in() return { value = 0, tag = "", dry_run = true } end
local function spec_perform(c) return perform(c.h, c.verb, c.sql, c.params, c.extra) end
local function spec_summary(r, c) return summary(c.verb, c.secret, r) end
local function spec_complete(r, c) return complete(c.verb, c.extra, r) end
local function spec_mark(r, c) if c.verb == "query" then record.secret_values(r.value) end end

-- One recorded statement; returns its result or raises.
local function call(h, verb, sql, params, extra)
  local secret = extra and extra.secret or nil
  local ok, res = api.call(h.run, {
    primitive = PRIMITIVE[verb] or ("sql." .. verb),
    args = { url = h.url, sql = sql, params = record_params(params) },
    mutating = verb == "exec",
    secret = secret,
    mark = spec_mark,
    describe = spec_describe,
    stand_in = spec_stand_in,
    complete = spec_complete,
    perform = spec_perform,
    summary = spec_summary,
    h = h, verb = verb, sql = sql, params = params, extra = extra,
  })
  if not ok then error(res, 0) end
  return res
end

-- Say, on screen and in the transcript, that a result was cut.
local function cut_notice(h, rows, cut, caps)
  rows.truncated, rows.total = true, cut.total
  local msg = string.format("sql: query on %s returned %d rows; kept the first %d (%d bytes; " ..
    "max_rows=%d, max_bytes=%d): pass {max_rows=, max_bytes=} after the parameters, or " ..
    "read them with db:each", h.url, cut.total, cut.kept, cut.bytes, caps.max_rows, caps.max_bytes)
  ui.log("warn", msg)
  local run = h.run
  if run.rec then run.rec:event("log", { level = "warn", message = msg, step = run.step and run.step.id }) end
end

local function usage(msg)
  errors.usage(msg, "sql")
end

function Handle:query(...)
  local sql, params, named = call_args("query", ...)
  if not sql then usage(params) end
  local caps, cerr = query_caps(params, named)
  if not caps then usage(cerr) end
  local res = call(self, "query", sql, params, caps)
  if res.cut then cut_notice(self, res.value, res.cut, caps) end
  return res.value
end

function Handle:each(sql, ...)
  local bad = check_sql("each", sql)
  local params = table.pack(...)
  local fn = params[params.n]
  if not bad and type(fn) ~= "function" then
    bad = "sql: db:each expects an SQL string, its $1..$n parameters, then a function(row)"
  end
  if bad then usage(bad) end
  params[params.n], params.n = nil, params.n - 1
  return call(self, "each", sql, params, { fn = fn }).value
end

function Handle:exec(...)
  local sql, params, opts = call_args("exec", ...)
  if not sql then usage(params) end
  local res = call(self, "exec", sql, params, { secret = opts.secret })
  return res.value, res.tag
end

-- Transactions -------------------------------------------------------------
-- A BEGIN/COMMIT/ROLLBACK/SAVEPOINT on the pinned connection, recorded as
-- an "sql.tx" call.  Returns ok, result or error.
local function control(h, conn, statement, shown, mutating)
  return api.call(h.run, {
    primitive = "sql.tx",
    args = { url = h.url, sql = shown or statement },
    mutating = mutating,
    describe = string.format("sql tx on %s: %s", h.url, shown or statement),
    stand_in = function() return { value = true, tag = "" } end,
    complete = function(r) return { value = true, tag = r.tag or "" } end,
    perform = function() return run_on(h, conn, "transaction", statement, NO_PARAMS, "simple") end,
    summary = function(r) return { tag = r.tag } end,
  })
end

local function tx_error(kind, fmt, ...)
  return errors.new(kind, string.format(fmt, ...), { primitive = "sql.tx" })
end

-- End the transaction (or savepoint) fn ran in; returns an error when it
-- could not be committed.
local function finish(h, conn, pin, fn_ok)
  local sp = pin.depth > 1 and ("rb_tx_" .. pin.depth) or nil
  if conn:status() ~= "ok" then
    return tx_error("lost", "sql: the connection to %s was lost inside db:tx; nothing was committed", h.url)
  end
  if not fn_ok or conn:txstatus() == "inerror" then
    control(h, conn, sp and ("ROLLBACK TO SAVEPOINT " .. sp .. "; RELEASE SAVEPOINT " .. sp) or "ROLLBACK")
    if fn_ok then
      return tx_error("server", "sql: transaction on %s rolled back, not committed: a statement in it " ..
        "failed (an error caught with pcall inside db:tx)", h.url)
    end
    return nil
  end
  local commit = sp and ("RELEASE SAVEPOINT " .. sp) or "COMMIT"
  if h.run.dry_run and not sp then
    control(h, conn, commit, nil, true)               -- shown as "would run"
    commit = "ROLLBACK"
  end
  local ok, res = control(h, conn, commit)
  if not ok then return res end
  if commit == "COMMIT" and res.tag ~= "COMMIT" then
    return tx_error("server", "sql: transaction on %s was rolled back by the server (%s), not committed",
      h.url, res.tag)
  end
end

-- The statement that opens fn's transaction: BEGIN (READ ONLY in a dry
-- run), or a savepoint inside one.  Returns the pin, statement, shown.
local function tx_begin(h, conn)
  local pool, co = h.pool, coroutine.running()
  local pin = pool.pins[co]
  if pin then
    pin.depth = pin.depth + 1
    return pin, "SAVEPOINT rb_tx_" .. pin.depth
  end
  pin = { conn = conn, depth = 1 }
  pool.pins[co] = pin
  return pin, h.run.dry_run and BEGIN_READ_ONLY or "BEGIN", h.run.dry_run and "BEGIN READ ONLY" or nil
end

function Handle:tx(fn)
  if type(fn) ~= "function" then usage("sql: db:tx expects a function(db) to run in the transaction") end
  local conn = acquire(self)
  local pin, begin, shown = tx_begin(self, conn)
  local bok, berr = control(self, conn, begin, shown)
  local res = bok and table.pack(pcall(fn, self)) or { false, berr, n = 2 }
  local ferr = bok and finish(self, conn, pin, res[1])
  pin.depth = pin.depth - 1
  if pin.depth == 0 then
    self.pool.pins[coroutine.running()] = nil
    release(self.pool, conn)
  end
  if not res[1] then error(res[2], 0) end
  if ferr then error(ferr, 0) end
  return table.unpack(res, 2, res.n)
end

function Handle:close()
  close_pool(self.pool)
end
Handle.__close = Handle.close

function Handle:__tostring()
  return "sql connection " .. self.url
end

-- sql.connect ----------------------------------------------------------------
-- The URL parsed and the options checked: a misuse raises.
local function parsed_url(url, opts)
  if type(url) ~= "string" or url == "" then
    usage("sql.connect: expected a connection URL (postgresql://user@host:port/dbname, or key=value pairs)")
  end
  if type(opts) ~= "table" then usage("sql.connect: options must be a table") end
  for _, k in ipairs({ "timeout", "connect_timeout", "statement_timeout" }) do
    local bad = check_timeout(k, opts[k])
    if bad then usage(bad) end
  end
  local parsed, perr = csql.parse(url)
  if parsed == nil then
    usage(string.format("sql.connect: cannot parse the connection URL: %s (expected " ..
      "postgresql://user@host:port/dbname?option=value, or key=value pairs)", (perr or ""):gsub("%s+$", "")))
  end
  if parsed.password and parsed.password ~= "" then record.secret(parsed.password) end
  return parsed
end

local function connect(url, opts)
  local run = context.need("sql.connect")
  opts = opts or {}
  local parsed = parsed_url(url, opts)
  local pool = get_pool(run, url, opts.statement_timeout, parsed)
  local h = setmetatable({ run = run, pool = pool, url = pool.display, quiet = opts.quiet,
    timeout = opts.timeout or DEFAULT_TIMEOUT,
    connect_timeout = opts.connect_timeout or tonumber(parsed.connect_timeout) or DEFAULT_CONNECT_TIMEOUT,
  }, Handle)
  if h.connect_timeout <= 0 then h.connect_timeout = DEFAULT_CONNECT_TIMEOUT end
  -- Connect now, so a wrong URL fails at this line, not at the first query.
  local ok, err = api.call(run, {
    primitive = "sql.connect",
    args = { url = h.url, connect_timeout = h.connect_timeout, timeout = h.timeout,
      statement_timeout = opts.statement_timeout },
    describe = "sql connect " .. h.url,
    complete = function(r) return { reused = r.reused or false, info = r.info or {} } end,
    perform = function()
      local conn, pinned, reused = acquire(h)
      local info = conn:info()
      if not pinned then release(pool, conn) end
      return { reused = reused, info = info }
    end,
    summary = function(r)
      return { reused = r.reused, server = r.info.who, backend_pid = r.info.pid,
        server_version = r.info.server_version, tls = r.info.tls }
    end,
  })
  if not ok then error(err, 0) end
  return h
end

return { connect = connect }
