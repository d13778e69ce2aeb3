-- runbook.roomstore: reading the incident room's store (runs, watch).
--
--   local store = roomstore.connect(spec)     raises a message on failure
--   store:whoami()                  the identity the store authenticated
--   store:runs(limit)               summaries, the most recently updated first:
--       { run, runbook, target, operator, host, identity, started, updated
--         (unix seconds), step, state, alive_age (seconds since the last
--         heartbeat), beat (the heartbeat's period) }
--   store:summary(run)             the summary of one run, or nil
--   store:find(prefix) -> ids       runs whose id starts with prefix (<= 2)
--   store:latest(runbook) -> id     the last run started (of that runbook)
--   store:tail(run) -> cursor, row  the end of the run's lines now, and the last line
--   store:next(run, cursor, wait) -> { {seq=, line=}... }, cursor
--       the lines after cursor (cursor nil: from the first), waiting up to
--       `wait` seconds when there are none; nil, why when interrupted
--   store:close()
--
-- It uses the primitives' C verbs (src/lib_sql.c, src/lib_redis.c) on a
-- connection of its own; it only reads, never writes to a run.
local redact = require("runbook.redact")

local M = {}

local CONNECT_TIMEOUT, CALL_TIMEOUT, BATCH = 5, 10, 1000

local function fail(spec, what)
  what = tostring(what):gsub("%s+", " "):gsub(" $", "")
  -- the store named by where it is (the URL without its user and password)
  local where = spec.url:gsub("^(%a[%w+.-]*://)[^@/]*@", "%1")
  error(string.format("room: %s store %s: %s", spec.backend, redact.redact(where), what), 0)
end

-- ---- PostgreSQL -----------------------------------------------------------

local PG = {}
PG.__index = PG

function PG:q(sql, ...)
  local rows, tag = self.conn:query(sql, table.pack(...), CALL_TIMEOUT)
  if rows == nil then fail(self.spec, tag.message or tag.kind or "query failed") end
  return rows
end

function PG:whoami()
  return self:q("select session_user as who")[1].who
end

local PG_SUMMARY = [[select run, runbook, target, operator, host, identity,
    to_char(started at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') as started,
    extract(epoch from updated)::float8 as updated, step, state,
    extract(epoch from now() - alive)::float8 as alive_age, beat::float8 as beat
  from runbook_room.runs ]]

-- A store no run has published to yet has no tables: no runs, not an error.
function PG:empty()
  if self.tables == nil then
    self.tables = self:q([[select to_regclass('runbook_room.runs') is not null
      and to_regclass('runbook_room.lines') is not null as ok]])[1].ok
  end
  return not self.tables
end

function PG:runs(limit)
  if self:empty() then return {} end
  return self:q(PG_SUMMARY .. "order by updated desc limit $1", limit)
end

function PG:summary(run)
  if self:empty() then return nil end
  return self:q(PG_SUMMARY .. "where run = $1", run)[1]
end

function PG:find(prefix)
  local ids = {}
  if self:empty() then return ids end
  for _, r in ipairs(self:q("select run from runbook_room.runs where starts_with(run, $1) order by run limit 2", prefix)) do
    ids[#ids + 1] = r.run
  end
  return ids
end

function PG:latest(runbook)
  if self:empty() then return nil end
  local r = self:q([[select run from runbook_room.runs where $1::text is null or runbook = $1
    order by started desc nulls last limit 1]], runbook)[1]
  return r and r.run
end

function PG:tail(run)
  local last = self:q("select seq, line from runbook_room.lines where run = $1 order by seq desc limit 1", run)[1]
  return last and last.seq or 0, last
end

function PG:read(run, after)
  return self:q("select seq, line from runbook_room.lines where run = $1 and seq > $2 order by seq limit $3",
    run, after, BATCH)
end

-- LISTEN before the first read, so a line written between a read and the
-- wait still wakes the wait.
function PG:next(run, cursor, wait)
  if not self.listening then
    self:q("listen runbook_room")
    self.listening = true
  end
  cursor = cursor or 0
  local rows = self:read(run, cursor)
  if #rows == 0 and wait and wait > 0 then
    local channel, why = self.conn:wait(wait)
    if channel == nil and why ~= "timeout" then return nil, why end
    rows = self:read(run, cursor)
  end
  if #rows > 0 then cursor = rows[#rows].seq end
  return rows, cursor
end

function PG:close()
  self.conn:close()
end

local function connect_pg(spec)
  local conn, f = require("runbook.sql").connect(spec.url, CONNECT_TIMEOUT)
  if conn == nil then fail(spec, f.message or "cannot connect") end
  return setmetatable({ conn = conn, spec = spec }, PG)
end

-- ---- Redis ------------------------------------------------------------------

local RD = {}
RD.__index = RD

function RD:call(argv, timeout)
  local ok, v = self.conn:call(timeout or CALL_TIMEOUT, argv)
  if not ok then
    if v.wake == "interrupt" then return nil, "interrupt" end
    fail(self.spec, v.message or v.reason or v.kind or "command failed")
  end
  return v
end

function RD:whoami()
  return self:call({ "ACL", "WHOAMI" })
end

-- A Redis reply of name, value, name, value... as a table (HGETALL, a
-- stream entry's fields; runbook.room_inbox reads its entries with it too).
function M.hash_table(list)
  local t = {}
  for i = 1, #list - 1, 2 do t[list[i]] = list[i + 1] end
  return t
end
local hash_table = M.hash_table

function RD:summary(run)
  local h = hash_table(self:call({ "HGETALL", "runbook:room:info:" .. run }))
  if next(h) == nil then return nil end
  h.run = h.run or run
  h.updated, h.beat = tonumber(h.updated), tonumber(h.beat)
  h.alive_age = h.alive and (os.time() - tonumber(h.alive)) or nil
  return h
end

function RD:runs(limit)
  local out = {}
  for _, id in ipairs(self:call({ "ZREVRANGE", "runbook:room:runs", "0", tostring(limit - 1) })) do
    out[#out + 1] = self:summary(id) or { run = id }
  end
  return out
end

function RD:find(prefix)
  local ids = {}
  for _, id in ipairs(self:call({ "ZRANGE", "runbook:room:runs", "0", "-1" })) do
    if id:sub(1, #prefix) == prefix then ids[#ids + 1] = id end
  end
  return ids
end

function RD:latest(runbook)
  local best, when
  for _, r in ipairs(self:runs(1000)) do
    if (runbook == nil or r.runbook == runbook) and (when == nil or (r.started or "") > when) then
      best, when = r.run, r.started or ""
    end
  end
  return best
end

local function entries(list)
  local rows = {}
  for _, e in ipairs(list or {}) do
    local f = hash_table(e[2])
    rows[#rows + 1] = { id = e[1], seq = tonumber(f.seq), line = f.line }
  end
  return rows
end

function RD:tail(run)
  local last = entries(self:call({ "XREVRANGE", "runbook:room:run:" .. run, "+", "-", "COUNT", "1" }))[1]
  return last and last.id or "0-0", last
end

-- XREAD BLOCK, a second at a time, so Ctrl-C is seen between them.
function RD:next(run, cursor, wait)
  local key = "runbook:room:run:" .. run
  cursor = cursor or "0-0"
  local argv = { "XREAD", "COUNT", tostring(BATCH) }
  if wait and wait > 0 then
    argv[#argv + 1] = "BLOCK"
    argv[#argv + 1] = tostring(math.max(1, math.floor(wait * 1000)))
  end
  argv[#argv + 1] = "STREAMS"
  argv[#argv + 1] = key
  argv[#argv + 1] = cursor
  local v, why = self:call(argv, (wait or 0) + CALL_TIMEOUT)
  if v == nil and why then return nil, why end
  local rows = entries(v and v[1] and v[1][2])
  if #rows > 0 then cursor = rows[#rows].id end
  return rows, cursor
end

function RD:close()
  self.conn:close()
end

local function connect_redis(spec)
  local cfg, why = require("runbook.url").redis(spec.url)
  if not cfg then fail(spec, why) end
  local conn, f = require("runbook.redis").open(cfg.host, cfg.port, CONNECT_TIMEOUT,
    "redis " .. cfg.host .. ":" .. cfg.port)
  if not conn then fail(spec, f.message or f.reason or f.kind or "cannot connect") end
  local store = setmetatable({ conn = conn, spec = spec }, RD)
  if cfg.password then
    store:call(cfg.user and { "AUTH", cfg.user, cfg.password } or { "AUTH", cfg.password })
  end
  if cfg.db and cfg.db ~= 0 then store:call({ "SELECT", tostring(cfg.db) }) end
  return store
end

function M.connect(spec)
  if spec.backend == "postgres" then return connect_pg(spec) end
  return connect_redis(spec)
end

return M
