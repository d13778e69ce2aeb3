-- runbook.room_inbox: the messages *to* a run in the incident room's store
-- (approve, reject, update), on PostgreSQL or Redis (room-spec.md).
--
-- room-store's runbook.room owns room.spec/room.connect and the
-- publisher; this file holds only what approvals and updates need until
-- that branch is merged (the coordinator folds the two): reading `room`
-- from the config, one connection of its own (not the sql/redis pools of
-- the runbook, which record every call in the transcript), whoami, and
-- the inbox itself.
--
--   local store = inbox.connect(inbox.spec(cfg, target))
--   store:whoami()                    -- the identity the store authenticated
--   store:post(run, kind, body)       -- -> id; the store stamps who wrote it
--   store:cursor(run)                 -- the newest message's id (start after it)
--   store:after(run, cursor)          -- -> messages newer than cursor, cursor
--   store:wait(run, cursor, seconds)  -- the same, waiting up to seconds for one
--   store:find_run(prefix)            -- -> the runs {run, state, identity} whose id starts so
--
-- A message: { id, kind, body = table, who, at, forged = why|nil }.  `who`
-- is the store's word, never the writer's: PostgreSQL's BEFORE INSERT
-- trigger sets it to session_user; in Redis the content is read back from
-- runbook:room:by:<who>:<run>, a key only <who> may write (the ACL in
-- docs/room-approvals.md), and an `in` entry whose content is not there
-- is returned with `forged` set.
--
-- PostgreSQL: libpq's notifications are not reachable from Lua, so a wait
-- polls every POLL seconds (one indexed query; Ctrl-C interrupts the
-- sleep).  Redis: XREAD BLOCK, bounded by the wait.
local cjson = require("cjson")
local credis = require("runbook.lazy")("runbook.redis")
local csql = require("runbook.lazy")("runbook.sql")
local loop = require("runbook.loop")
local networds = require("runbook.networds")
local record = require("runbook.record")
local urls = require("runbook.url")

local inbox = {}

local CONNECT_TIMEOUT, CALL_TIMEOUT = 5, 10
local POLL = 0.25
local BATCH = 100
local PREFIX = "runbook:room:"

local function now_iso()
  return os.date("!%Y-%m-%dT%H:%M:%SZ")
end

local function decode(text)
  local ok, v = pcall(cjson.decode, text or "")
  if ok and type(v) == "table" then return v end
  return {}
end

-- ---- PostgreSQL ---------------------------------------------------------------

local PG = {}
PG.__index = PG

-- The schema of docs/room.md, created once, under the transaction-scoped
-- advisory lock the publisher takes (src/lib_roompub.c's PG_SCHEMA: its
-- lines and runs tables are the same as here, so either side may be first).
local SCHEMA = [[
select pg_advisory_xact_lock(7243011);
create schema if not exists runbook_room;
create table if not exists runbook_room.lines(run text, seq bigint, line text not null,
  at timestamptz default now(), primary key (run, seq));
create table if not exists runbook_room.runs(run text primary key, runbook text, target text,
  operator text, host text, identity text, started timestamptz, updated timestamptz, step text,
  state text, alive timestamptz, beat real);
create table if not exists runbook_room.messages(id bigserial primary key, run text not null,
  kind text not null, body jsonb not null, who name not null default session_user,
  at timestamptz default now());
create index if not exists messages_run on runbook_room.messages(run, id);
create or replace function runbook_room.stamp_who() returns trigger language plpgsql as $$
begin
  -- the writer's own login, whatever the INSERT said (SET ROLE does not change it)
  new.who := session_user;
  perform pg_notify('runbook_room_in', new.run);  -- delivered at commit
  return new;
end $$;
create or replace trigger stamp_who before insert or update on runbook_room.messages
  for each row execute function runbook_room.stamp_who();
]]

local function pg_reason(f)
  local msg = f and (f.message or f.kind or f.wake) or "?"
  msg = tostring(msg):match("^%s*([^\n]*)") or ""
  return (msg:gsub("^FATAL:%s+", ""):gsub("^ERROR:%s+", ""))
end

-- Raises the words of a call the loop stopped (a failed connect says it
-- in `wake`, a failed query in `kind`), if it was.
local function stopped(self, f, seconds)
  local wake = f and (f.wake or f.kind)
  if wake == "interrupt" then error(loop.interrupt_text(), 0) end
  if wake == "cancel" then error(string.format("room: %s: stopped: the step's timeout ran out", self.shown), 0) end
  if wake == "timeout" then
    error(string.format("room: %s: no answer within %d s (is the server up? check the room's url)",
      self.shown, seconds), 0)
  end
end

-- A connection that was lost (a server restart) is opened again on the
-- next call, so a long wait outlives it.
function PG:query(sql, ...)
  if self.conn == nil or self.conn:status() ~= "ok" then self:reopen() end
  local v, f = self.conn:query(sql, table.pack(...), CALL_TIMEOUT, "rows")
  if v == nil then
    stopped(self, f, CALL_TIMEOUT)
    error(string.format("room: %s: %s", self.shown, pg_reason(f)), 0)
  end
  return v
end

function PG.open(spec)
  local parsed, perr = csql.parse(spec.url)
  if parsed == nil then error("room: cannot parse " .. "room.url: " .. tostring(perr), 0) end
  if parsed.password and parsed.password ~= "" then record.secret(parsed.password) end
  local self = setmetatable({ spec = spec, shown = string.format("postgres %s:%s/%s", parsed.host or "localhost",
    parsed.port or "5432", parsed.dbname or parsed.user or "?") }, PG)
  self:reopen()
  local conn = self.conn
  local have = self:query("select to_regclass('runbook_room.messages') is not null " ..
    "and to_regclass('runbook_room.runs') is not null as ok")[1].ok
  if not have then
    local v, ef = conn:query(SCHEMA, { n = 0 }, CALL_TIMEOUT, "exec")
    if v == nil then
      conn:close()
      error(string.format("room: cannot create the schema runbook_room on %s: %s (an administrator " ..
        "creates it once: docs/room-approvals.md)", self.shown, pg_reason(ef)), 0)
    end
  end
  return self
end

function PG:reopen()
  if self.conn then self.conn:close() end
  local conn, f = csql.connect(self.spec.url, CONNECT_TIMEOUT)
  if conn == nil then
    stopped(self, f, CONNECT_TIMEOUT)
    error(string.format("room: cannot connect to %s: %s (check room.url)", self.shown, pg_reason(f)), 0)
  end
  self.conn = conn
end

function PG:whoami()
  self.me = self.me or self:query("select session_user::text as who")[1].who
  return self.me
end

function PG:post(run, kind, body)
  local row = self:query("insert into runbook_room.messages(run, kind, body) values ($1, $2, $3::jsonb) " ..
    "returning id, who::text as who", run, kind, cjson.encode(body))[1]
  return row.id, row.who
end

function PG:cursor(run)
  return self:query("select coalesce(max(id), 0) as id from runbook_room.messages where run = $1", run)[1].id
end

function PG:after(run, cursor)
  local rows = self:query("select id, kind, body::text as body, who::text as who, " ..
    "to_char(at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') as at " ..
    "from runbook_room.messages where run = $1 and id > $2 order by id limit " .. BATCH,
    run, tostring(cursor or 0))
  local out = {}
  for i, r in ipairs(rows) do
    out[i] = { id = r.id, kind = r.kind, body = decode(r.body), who = r.who, at = r.at }
    cursor = r.id
  end
  return out, cursor
end

function PG:wait(run, cursor, seconds)
  local deadline = loop.now() + seconds
  while true do
    local msgs, c = self:after(run, cursor)
    if #msgs > 0 or loop.now() >= deadline then return msgs, c end
    loop.sleep(math.min(POLL, math.max(0, deadline - loop.now())))
  end
end

function PG:find_run(prefix)
  local rows = self:query("select run, state, identity from runbook_room.runs where left(run, length($1)) = $1 " ..
    "order by updated desc nulls last limit 5", prefix)
  return rows
end

function PG:close()
  if self.conn then self.conn:close() end
  self.conn = nil
end

-- ---- Redis ------------------------------------------------------------------

local RD = {}
RD.__index = RD

function RD:call(argv, timeout)
  if self.conn == nil or not self.conn:isopen() then self:reopen() end
  local ok, v = self.conn:call(timeout or CALL_TIMEOUT, argv)
  if ok then return v end
  if v.kind == "server" then error(string.format("room: %s: %s: %s", self.shown, argv[1], v.message), 0) end
  networds.raise("redis", v, { primitive = "room" })
end

function RD:reopen()
  local r = self.r
  local c, f = credis.open(r.host, r.port, CONNECT_TIMEOUT, self.shown)
  if not c then networds.raise("redis", f, { primitive = "room" }) end
  self.conn = c
  if r.password then self:call(r.user and { "AUTH", r.user, r.password } or { "AUTH", r.password }) end
  if r.db ~= 0 then self:call({ "SELECT", tostring(r.db) }) end
end

function RD.open(spec)
  local r, why = urls.redis(spec.url)
  if r == nil then error("room: bad redis URL in " .. "room.url: " .. why, 0) end
  if r.password then record.secret(r.password) end
  local self = setmetatable({ r = r, shown = string.format("redis %s:%d/%d", r.host, r.port, r.db) }, RD)
  self:reopen()
  return self
end

function RD:whoami()
  self.me = self.me or self:call({ "ACL", "WHOAMI" })
  return self.me
end

local fields = require("runbook.roomstore").hash_table

function RD:post(run, kind, body)
  local me = self:whoami()
  local text = cjson.encode(body)
  local ref = self:call({ "XADD", PREFIX .. "by:" .. me .. ":" .. run, "*", "kind", kind, "body", text })
  return self:call({ "XADD", PREFIX .. "in:" .. run, "*", "kind", kind, "who", me, "ref", ref }), me
end

function RD:cursor(run)
  local last = self:call({ "XREVRANGE", PREFIX .. "in:" .. run, "+", "-", "COUNT", "1" })
  return last[1] and last[1][1] or "0-0"
end

-- An `in` entry, its content read from under its writer's own key.
function RD:message(run, entry)
  local ptr = fields(entry[2])
  local m = { id = entry[1], who = ptr.who, kind = ptr.kind, body = {} }
  local at = tonumber(entry[1]:match("^(%d+)"))
  m.at = at and os.date("!%Y-%m-%dT%H:%M:%SZ", at // 1000) or nil
  local got = ptr.who and ptr.ref and
    self:call({ "XRANGE", PREFIX .. "by:" .. ptr.who .. ":" .. run, ptr.ref, ptr.ref })
  if not got or #got == 0 then
    m.forged = string.format("no entry %s under %sby:%s:%s (only %s can write there)", tostring(ptr.ref),
      PREFIX, tostring(ptr.who), run, tostring(ptr.who))
    return m
  end
  local content = fields(got[1][2])
  m.kind, m.body = content.kind, decode(content.body)
  return m
end

function RD:batch(run, entries, cursor)
  local out = {}
  for i, e in ipairs(entries or {}) do
    out[i] = self:message(run, e)
    cursor = e[1]
  end
  return out, cursor
end

function RD:after(run, cursor)
  local entries = self:call({ "XRANGE", PREFIX .. "in:" .. run, "(" .. (cursor or "0-0"), "+",
    "COUNT", tostring(BATCH) })
  return self:batch(run, entries, cursor or "0-0")
end

function RD:wait(run, cursor, seconds)
  local ms = math.max(1, math.floor(seconds * 1000))
  local reply = self:call({ "XREAD", "COUNT", tostring(BATCH), "BLOCK", tostring(ms), "STREAMS",
    PREFIX .. "in:" .. run, cursor or "0-0" }, seconds + CALL_TIMEOUT)
  if not reply then return {}, cursor end
  return self:batch(run, reply[1][2], cursor)
end

function RD:find_run(prefix)
  local rows = {}
  for _, run in ipairs(self:call({ "ZREVRANGE", PREFIX .. "runs", "0", "-1" })) do
    if run:sub(1, #prefix) == prefix then
      local info = self:call({ "HMGET", PREFIX .. "info:" .. run, "state", "identity" })
      rows[#rows + 1] = { run = run, state = info[1] or nil, identity = info[2] or nil }
      if #rows == 5 then break end
    end
  end
  return rows
end

function RD:close()
  if self.conn then self.conn:close() end
  self.conn = nil
end

-- A store object for spec (runbook.room's spec); raises a worded error.
function inbox.connect(spec)
  if spec.backend == "postgres" then return PG.open(spec) end
  return RD.open(spec)
end

-- For `runbook approve` and `runbook update`: the store of the config's
-- (or --target's) room and the run RUN names (an id or a unique prefix).
-- Returns store, row {run, state}, or nil, exit code, message.
function inbox.reach(args, verb)
  local prefix = args[1]
  if prefix == nil or prefix == "" then return nil, 2, verb .. ": which run? (runbook " .. verb .. " RUN ...)" end
  if args[2] ~= nil then return nil, 2, string.format("%s: one run at a time (got %q too)", verb, args[2]) end
  local spec, serr = require("runbook.roomcmd").spec(args)
  if not spec then return nil, 2, verb .. ": " .. serr end
  local okc, store = pcall(inbox.connect, spec)
  if not okc then return nil, 1, tostring(store) end
  local okf, rows = pcall(store.find_run, store, prefix)
  if not okf then store:close() return nil, 1, tostring(rows) end
  local row = rows[1]
  for _, r in ipairs(rows) do if r.run == prefix then row = r end end
  if row == nil then
    store:close()
    return nil, 1, string.format("%s: no run %s in the room (%s)", verb, prefix, store.shown)
  end
  if #rows > 1 and row.run ~= prefix then
    store:close()
    local ids = {}
    for i, r in ipairs(rows) do ids[i] = r.run end
    return nil, 2, string.format("%s: %s names several runs (%s): give more of the id", verb, prefix,
      table.concat(ids, ", "))
  end
  return store, row
end

-- What the message says about its writer, beside what the store knows.
function inbox.body(text)
  local operator = require("runbook.operator")
  return { text = text, os_user = operator.username(), host = operator.hostname() }
end

-- One message of the run: the trusted fields, for a transcript event.
function inbox.describe(m)
  local b = m.body
  return { by = m.who, os_user = type(b.os_user) == "string" and b.os_user or nil,
    host = type(b.host) == "string" and b.host or nil, text = type(b.text) == "string" and b.text or nil,
    at = m.at }
end

return inbox
