-- redis: Redis from a runbook (C verbs in src/lib_redis.c).
--
--   local r = redis.connect("redis://:PASSWORD@host:6379/2?timeout=10")
--   r:call("SET", "k", "v")            --> "OK"
--   r:call("MGET", "a", "b")           --> { "1", false }
--   r:call{ "BLPOP", "q", 30, timeout = 40 }   -- table form, with options
--   r:call{ "GET", "vault:db", secret = true } -- the reply is a secret
--   r:ping()                           --> "PONG"
--
-- URL: redis://[[user]:password@]host[:port][/db][?connect_timeout=S&timeout=S]
-- or a second argument {password=, user=, db=, connect_timeout=, timeout=}
-- (it wins over the URL).  A user sends AUTH user password (ACL), else AUTH
-- password; /db sends SELECT.  connect_timeout (default 5 s) bounds the name
-- lookup and TCP connect; timeout (default 10 s, 0 = none) bounds each
-- command.  A blocking command whose own timeout is longer (BLPOP k 30)
-- needs the table form's timeout=.
--
-- Replies: status and bulk strings -> string ("OK", "PONG"), integer ->
-- integer, nil -> nil, array -> list (nested).  Inside an array a nil
-- becomes false, so # and ipairs see every element, and an error (from
-- EXEC) becomes {err = text}: Redis's own scripting uses the same mapping.
-- An error reply raises "redis HOST:PORT: CMD: <the server's message>".
--
-- secret = true (table form): every string and number of the reply is
-- marked secret before anything is recorded, and the call's record holds
-- the reply's type and size only.  The arguments are recorded as usual:
-- a secret sent to the server is passed through secret() first.
--
-- redis.connect(url) returns the same connection object for the same URL
-- and options during a run; it holds one server connection for sequential
-- calls (so CLIENT ID stays the same) and opens more only when parallel
-- branches use it at once.  A connection the server closed while idle
-- (its `timeout`, a restart, a CLIENT KILL) is noticed and replaced before
-- the next command is sent; the check is skipped only for a connection
-- that answered under 10 ms before with nothing waited on since, only
-- Lua computed (src/lib_redis.c: a loop of calls pays no poll for it).
-- A call that fails under way (timeout, Ctrl-C, the connection lost)
-- raises and drops its connection; the next call reconnects, but no
-- command is ever retried on its own.  Session state
-- belongs to whichever server connection is idle: keep MULTI/EXEC and
-- WATCH out of parallel branches that share an object (connect them to
-- URLs of their own), and use /db in the URL rather than SELECT.
--
-- Dry run: connecting runs for real; each command is classified from the
-- server's own flags (COMMAND INFO, asked once per command name and
-- connection).  A command flagged readonly runs; one flagged write, admin,
-- pubsub, noscript (transactions, connection state, scripts) or
-- may_replicate is simulated, returning "OK" (or 0 for the commands listed
-- in INTEGER_REPLY, a hint for the stand-in's type only) or the table
-- form's stand_in=.  Anything else (PING, INFO, TIME, ECHO) runs.  A
-- command the server does not know runs, so the rehearsal reports it.
--
-- Every call is a `call` event (primitive redis.call) with the server, the
-- command (AUTH and other passwords shown as ***), the outcome, the
-- duration and a short summary of the reply.  The password in the URL is a
-- secret for the whole run: never in the transcript or on the screen.
local api = require("runbook.api")
local context = require("runbook.context")
local credis = require("runbook.lazy")("runbook.redis")
local networds = require("runbook.networds")
local errors = require("runbook.errors")
local record = require("runbook.record")
local transcript = require("runbook.transcript")
local urls = require("runbook.url")

local CONNECT_TIMEOUT, COMMAND_TIMEOUT = 5, 10
local SHOWN_ARG = 1024        -- longer arguments are cut in the record

local SIMULATE_FLAGS = { write = true, admin = true, pubsub = true, noscript = true,
  may_replicate = true }

-- The stand-in for a simulated command is 0 for these (integer replies),
-- "OK" otherwise.  Only the stand-in's type; the classification is the
-- server's.
local INTEGER_REPLY = {}
for name in ([[DEL UNLINK INCR INCRBY DECR DECRBY APPEND SETRANGE SETNX MSETNX EXPIRE
  PEXPIRE EXPIREAT PEXPIREAT PERSIST LPUSH RPUSH LPUSHX RPUSHX LINSERT LREM SADD SREM
  SMOVE SINTERSTORE SUNIONSTORE SDIFFSTORE ZADD ZREM ZREMRANGEBYSCORE ZREMRANGEBYRANK
  ZREMRANGEBYLEX ZINTERSTORE ZUNIONSTORE ZDIFFSTORE HSET HSETNX HDEL HINCRBY PFADD
  SETBIT BITOP PUBLISH SPUBLISH XDEL XTRIM XACK COPY RENAMENX MOVE TOUCH]]):gmatch("%S+") do
  INTEGER_REPLY[name] = true
end

-- Hints for error replies, by the code the server puts first.
local ERROR_HINTS = {
  NOAUTH = "the server requires a password: put :PASSWORD@ before the host in the URL",
  WRONGPASS = "check the user and password in the URL",
  NOPERM = "the ACL user may not run this command or touch this key; check its ACL",
  READONLY = "this server is a read-only replica: connect to the primary",
  MOVED = "this is a cluster node and the key lives on another one",
  LOADING = "the server is still loading its dataset: retry in a moment",
}

-- The kind of an error reply, by its code; any other is "server".
local REPLY_KINDS = { NOAUTH = "auth", WRONGPASS = "auth", NOPERM = "auth", LOADING = "busy", BUSY = "busy" }

-- Parse redis://... (runbook.url) into {host, port, db, user, password,
-- timeouts}; raises a message naming what is wrong (with the password hidden).
local function parse_url(url)
  local cfg, why = urls.redis(url)
  if not cfg then
    -- (no example password here: the screen's redaction would mangle it)
    error(string.format("redis.connect: %s in %s (expected redis://host[:port][/db], with " ..
      "user:password@ before the host to log in)", why, transcript.redact(url)), 0)
  end
  cfg.connect_timeout = cfg.connect_timeout or CONNECT_TIMEOUT
  cfg.timeout = cfg.timeout or COMMAND_TIMEOUT
  return cfg
end

local function apply_options(cfg, opts)
  for _, k in ipairs({ "password", "user", "db", "connect_timeout", "timeout" }) do
    local v = opts[k]
    if v ~= nil then
      local want = (k == "password" or k == "user") and "string" or "number"
      if type(v) ~= want or (want == "number" and v < 0) then
        error(string.format("redis.connect: option %s must be a %s%s", k, want,
          want == "number" and " >= 0" or ""), 0)
      end
      cfg[k] = v
    end
  end
end

local function server_name(cfg)
  local host = cfg.host:find(":") and ("[" .. cfg.host .. "]") or cfg.host
  return host .. ":" .. cfg.port .. (cfg.db ~= 0 and ("/" .. cfg.db) or "")
end

local function shown_url(cfg)
  local auth = ""
  if cfg.user or cfg.password then
    auth = (cfg.user or "") .. (cfg.password and ":***" or "") .. "@"
  end
  return "redis://" .. auth .. server_name(cfg)
end

-- Commands whose arguments can hold a password: each has its case in
-- secret_positions, and redis.argv (C) finds a call of one not plain.
local MAY_HIDE = { AUTH = true, HELLO = true, MIGRATE = true, CONFIG = true, ACL = true }

-- Which arguments are passwords, so the record and the screen show ***.
local function secret_positions(argv)
  local hide, name = {}, argv[1]:upper()
  local sub = argv[2] and argv[2]:upper()
  if name == "AUTH" then
    for i = 2, #argv do hide[i] = true end
  elseif name == "HELLO" or name == "MIGRATE" then
    for i = 2, #argv do
      local a = argv[i]:upper()
      if a == "AUTH" then hide[i + (name == "HELLO" and 2 or 1)] = true end
      if a == "AUTH2" then hide[i + 2] = true end
    end
  elseif name == "CONFIG" and sub == "SET" then
    for i = 3, #argv - 1, 2 do
      local p = argv[i]:lower()
      if p == "requirepass" or p == "masterauth" then hide[i + 1] = true end
    end
  elseif name == "ACL" and sub == "SETUSER" then
    for i = 4, #argv do
      if argv[i]:match("^[<>#!]") then hide[i] = true end
    end
  end
  return hide
end

-- The command as the record and the screen show it, when redis.argv
-- found it is not plain: passwords as ***, long arguments cut.
local function shown_argv(argv)
  local hide, out = secret_positions(argv), {}
  for i, a in ipairs(argv) do
    if hide[i] then
      out[i] = "***"
    elseif #a > SHOWN_ARG then
      out[i] = a:sub(1, SHOWN_ARG) .. string.format("... [%d bytes]", #a)
    else
      out[i] = a
    end
  end
  return out
end

local function describe(argv, where)
  local parts = {}
  for i, a in ipairs(argv) do
    if #a > 60 then a = a:sub(1, 60) .. "..." end
    if not a:match("^[%w%-_./:=@%%+,*|]+$") then a = "'" .. a:gsub("'", "'\\''") .. "'" end
    parts[i] = a
  end
  return "redis " .. table.concat(parts, " ") .. " (" .. where .. ")"
end

-- What the record of a secret = true call says of its reply.
local function summarize_secret(v)
  if type(v) == "string" then return { type = "string", bytes = #v } end
  if type(v) == "table" then return { type = "array", count = #v } end
  return { type = v == nil and "nil" or (math.type(v) or type(v)) }
end

local function summarize(v)
  if type(v) == "string" then
    return { type = "string", value = #v > 200 and (v:sub(1, 200) .. "...") or v, bytes = #v }
  elseif type(v) == "table" then
    return { type = "array", count = #v }
  elseif v == nil then
    return { type = "nil" }
  end
  return { type = math.type(v) or type(v), value = v }
end

-- The message of a failed call: the server's error reply with a hint for
-- its code, or the words for a transport failure (runbook.networds).
local function reply_error(cfg, name, f)
  if f.kind ~= "server" then return networds.message("redis", f) end
  local code = f.message:match("^(%u+)")
  local hint = ERROR_HINTS[code]
  return string.format("redis %s: %s: %s%s", server_name(cfg), name, f.message,
    hint and (" (" .. hint .. ")") or "")
end

-- A call of the session set-up: the reply, or raises; a server error
-- reply is worded by why(message).
local function setup_call(c, cfg, argv, why)
  local ok, f = c:call(cfg.timeout, argv)
  if ok then return f end
  c:close()
  if f.kind ~= "server" then networds.raise("redis", f, { primitive = "redis.connect" }) end
  local code = f.message:match("^(%u+)")
  errors.raise(REPLY_KINDS[code] or "server", why(f.message), { primitive = "redis.connect", code = code })
end

-- One server connection: connect, AUTH, SELECT.  Raises on failure.
local function open_session(cfg)
  local c, f = credis.open(cfg.host, cfg.port, cfg.connect_timeout, "redis " .. server_name(cfg))
  if not c then networds.raise("redis", f, { primitive = "redis.connect" }) end
  if cfg.password then
    local argv = cfg.user and { "AUTH", cfg.user, cfg.password } or { "AUTH", cfg.password }
    setup_call(c, cfg, argv, function(err)
      return string.format("redis %s: authentication failed%s: %s (check the %spassword in the URL)",
        server_name(cfg), cfg.user and (" for user " .. cfg.user) or "", err,
        cfg.user and "user and " or "")
    end)
  end
  if cfg.db ~= 0 then
    setup_call(c, cfg, { "SELECT", tostring(cfg.db) }, function(err)
      return string.format("redis %s: SELECT %d failed: %s (check the /db in the URL against " ..
        "the server's `databases` setting)", server_name(cfg), cfg.db, err)
    end)
  end
  return c
end

-- An idle server connection of this object, or a new one.
local function acquire(self)
  if self.closed then
    errors.usage(string.format("redis %s: the connection was closed (r:close()); " ..
      "call redis.connect again", self.where), "redis.call")
  end
  local pool = self.pool
  local only = pool[2] == nil and pool[1]
  if only and only:ready() then return only end   -- one connection, open and idle
  for i = #pool, 1, -1 do
    if not pool[i]:isopen() then table.remove(pool, i) end
  end
  for _, c in ipairs(pool) do
    if not c:busy() then return c end
  end
  local c = open_session(self.cfg)
  pool[#pool + 1] = c
  return c
end

-- Send argv on an idle connection; returns the mapped reply, raises the
-- full message for an error reply.
local function roundtrip(self, argv, timeout)
  local c = acquire(self)
  local ok, v = c:call(timeout or self.cfg.timeout, argv)
  if not ok and v.kind ~= "server" then networds.raise("redis", v, { primitive = "redis.call" }) end
  if not ok then
    local code = v.message:match("^(%u+)")
    errors.raise(REPLY_KINDS[code] or "server", reply_error(self.cfg, argv[1]:upper(), v),
      { primitive = "redis.call", code = code })
  end
  return v
end

local function flag_set(list)
  local set, names = {}, {}
  for _, f in ipairs(type(list) == "table" and list or {}) do
    if type(f) == "string" then set[f] = true; names[#names + 1] = f end
  end
  return set, names
end

-- COMMAND INFO name -> { flags = {...}, subs = { ["object|encoding"] = {...} } }
-- or { unknown = true }, or { error = text } when the server refuses
-- COMMAND (renamed or denied by its ACL).  A lost connection raises.
local function command_info(self, name)
  local ok, reply = acquire(self):call(self.cfg.timeout, { "COMMAND", "INFO", name })
  if not ok and reply.kind ~= "server" then networds.raise("redis", reply, { primitive = "redis.call" }) end
  if not ok then return { error = reply.message } end
  local info = type(reply) == "table" and reply[1]
  if type(info) ~= "table" then return { unknown = true } end
  local entry = { flags = info[3], subs = {} }
  for _, sub in ipairs(type(info[10]) == "table" and info[10] or {}) do
    if type(sub) == "table" and type(sub[1]) == "string" then entry.subs[sub[1]:lower()] = sub[3] end
  end
  return entry
end

-- Dry run: should this command be simulated?  Returns simulate, args for
-- the record (class and the server's flags).
local function classify(self, argv)
  local name = argv[1]:lower()
  local entry = self.command_flags[name]
  if entry == nil then
    entry = command_info(self, name)
    self.command_flags[name] = entry
  end
  if entry.error then
    return true, { class = "unclassified", why = "COMMAND INFO failed: " .. entry.error }
  end
  if entry.unknown then return false, { class = "unknown", why = "COMMAND INFO does not know it" } end
  local flags, full = entry.flags, name
  if argv[2] and entry.subs[name .. "|" .. argv[2]:lower()] then
    full = name .. "|" .. argv[2]:lower()
    flags = entry.subs[full]
  end
  local set, names = flag_set(flags)
  local simulate = false
  if not set.readonly then
    for f in pairs(set) do simulate = simulate or SIMULATE_FLAGS[f] == true end
  end
  return simulate, { class = simulate and "write" or "read", command_info = full, flags = names }
end

local NO_OPTIONS = setmetatable({}, { __newindex = function() error("NO_OPTIONS is read-only", 2) end })

-- The connection objects: one metatable for every run; an object keeps
-- the run that made it (its calls record into that run).
local Conn = {}
Conn.__index = Conn

local function close_all(run)
  for key, conn in pairs(run.redis_conns) do
    conn:close()
    run.redis_conns[key] = nil
  end
end

local function usage(msg)
  errors.usage(msg, "redis")
end

-- The table form's options, checked.
local function checked_options(t)
  local opts = {}
  for k, v in pairs(t) do
    if type(k) ~= "number" then
      if k ~= "timeout" and k ~= "stand_in" and k ~= "secret" then
        -- (not "secret=" before a parenthesis: the screen hides what follows it)
        usage(string.format("redis: unknown option %q (the table form's options are timeout, " ..
          "stand_in and secret)", tostring(k)))
      end
      opts[k] = v
    end
  end
  if opts.secret ~= nil and type(opts.secret) ~= "boolean" then usage("redis: secret must be true or false") end
  if opts.timeout ~= nil and (type(opts.timeout) ~= "number" or opts.timeout < 0) then
    usage("redis: timeout must be a number of seconds >= 0")
  end
  return opts
end

-- r:call's command (redis.argv: strings, and whether the record shows it
-- as it is) and its options, checked.
local function checked_argv(first, ...)
  local opts = NO_OPTIONS
  if type(first) == "table" then
    opts = checked_options(first)
  elseif type(first) ~= "string" then
    usage("redis: r:call(command, args...) or r:call{command, args..., timeout=}")
  end
  local argv, plain, what = credis.argv(MAY_HIDE, SHOWN_ARG, first, ...)
  if argv == nil then
    local position = plain
    if position <= 1 then usage("redis: the command name must be a non-empty string") end
    local name = type(first) == "table" and first[1] or first
    usage(string.format("redis %s: argument %d is a %s; pass strings or numbers", name:upper(),
      position, what))
  end
  return argv, opts, plain
end

-- What api.call asks of a command's spec (made once, not per call).
local function spec_describe(spec) return describe(spec.args.command, spec.conn.where) end
local function spec_perform(spec) return roundtrip(spec.conn, spec.argv, spec.opts.timeout) end
local function spec_stand_in(spec)
  if spec.opts.stand_in ~= nil then return spec.opts.stand_in end
  return INTEGER_REPLY[spec.argv[1]:upper()] and 0 or "OK"
end

-- Validate, classify, record and perform one command; raises on failure.
local function invoke(self, first, ...)
  local run = self.run
  local argv, opts, plain = checked_argv(first, ...)
  local args = { server = self.where, command = plain and argv or shown_argv(argv) }
  local simulate = false
  if run.dry_run and run.phase == "execute" then
    local okk, sim, why = pcall(classify, self, argv)
    if not okk then error(errors.from(sim, "redis.call"), 0) end
    simulate = sim
    for k, v in pairs(why) do args[k] = v end
  end
  local ok, res = api.call(run, {
    primitive = "redis.call",
    args = args,
    mutating = simulate,
    describe = spec_describe,
    stand_in = spec_stand_in,
    perform = spec_perform,
    secret = opts.secret or nil,
    mark = record.secret_values,
    summary = opts.secret and summarize_secret or summarize,
    conn = self, argv = argv, opts = opts,
  })
  if not ok then error(res, 0) end
  return res
end

function Conn:call(...)
  return invoke(self, ...)
end

function Conn:ping()
  return invoke(self, "PING")
end

-- Close the server connections; the object is unusable afterwards, and
-- redis.connect(url) makes a new one.
function Conn:close()
  self.closed = true
  for _, c in ipairs(self.pool) do c:close() end
  self.pool = {}
  if self.run.redis_conns[self.key] == self then self.run.redis_conns[self.key] = nil end
end
Conn.__close = Conn.close
Conn.__tostring = function(self)
  return "redis connection " .. self.where .. (self.closed and " (closed)" or "")
end

local function cache_key(url, opts)
  if opts == nil then return url end
  local keys = {}
  for k in pairs(opts) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  for i, k in ipairs(keys) do keys[i] = k .. "=" .. tostring(opts[k]) end
  return url .. "\0" .. table.concat(keys, "&")
end

-- The URL and options as a checked config.
local function config_of(url, opts)
  local okp, cfg = pcall(parse_url, url)
  if okp and opts then okp, cfg = pcall(function() apply_options(cfg, opts); return cfg end) end
  if not okp then usage(cfg) end
  if cfg.password then transcript.secret(cfg.password) end
  return cfg
end

-- The run's connections, closed when it ends.
local function conns(run)
  if run.redis_conns == nil then
    run.redis_conns = {}
    run.cleanup[#run.cleanup + 1] = function() close_all(run) end
  end
  return run.redis_conns
end

local function connect(url, opts)
  local run = context.need("redis.connect")
  if type(url) ~= "string" then usage("redis.connect: expected a URL string redis://host:port/db") end
  if opts ~= nil and type(opts) ~= "table" then usage("redis.connect: options must be a table") end
  local key = cache_key(url, opts)
  local cached = conns(run)[key]
  if cached then return cached end
  local cfg = config_of(url, opts)
  local self = setmetatable({ run = run, cfg = cfg, key = key, where = server_name(cfg), pool = {},
    command_flags = {} }, Conn)
  local ok, err = api.call(run, {
    primitive = "redis.connect",
    args = { url = shown_url(cfg), db = cfg.db, user = cfg.user,
             connect_timeout = cfg.connect_timeout, timeout = cfg.timeout },
    mutating = false,
    describe = "redis connect " .. shown_url(cfg),
    perform = function() self.pool[1] = open_session(cfg) end,
  })
  if not ok then error(err, 0) end
  run.redis_conns[key] = self
  return self
end

return { connect = connect }
