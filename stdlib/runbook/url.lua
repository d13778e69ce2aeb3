-- runbook.url: the one reader of the URLs runbook is given (redis, http,
-- postgres for display; libpq and libcurl still read theirs to connect).
--
--   url.parse(s) -> u | nil, why
--       u = { scheme (lower case), user, password (percent-decoded),
--             raw_user, raw_password (as written), host (no brackets),
--             ipv6, port (a number or nil), path ("" or "/..."),
--             query = { name = value }, params = { {name, value, raw}... },
--             fragment }
--   url.redis(s) -> { host, port, db, user, password, connect_timeout,
--                     timeout } | nil, why          (a redis:// URL, checked)
--   url.redact(s) -> s with the password (userinfo, ?password=) as ***
--   url.decode(s) -> s with its %XX escapes decoded
--
-- Where the userinfo ends: http(s) URLs are read as libcurl reads them,
-- the authority ending at the first "/", "?" or "#", so a path may hold
-- an "@".  In other schemes the userinfo runs to the last "@" before the
-- query, so a password may hold an unescaped "/" or "@".  Percent-escapes
-- that are not two hex digits are kept as written (a password with a bare
-- "%" still works).  why names what is wrong ("the port must be a number"),
-- never the URL itself: the caller shows the URL redacted.
local M = {}

local DEFAULT_PORTS = { redis = 6379, rediss = 6379, http = 80, https = 443,
  postgres = 5432, postgresql = 5432, ssh = 22 }
local CURL_AUTHORITY = { http = true, https = true }

function M.decode(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- The parts of s by position, before any is checked: scheme, where the
-- userinfo and the host:port lie, and where the path starts.
local function split(s)
  local scheme, from = s:match("^(%a[%w+.-]*)://()")
  if not scheme then return nil end
  scheme = scheme:lower()
  local tail = s:find("[?#]", from) or #s + 1
  local auth_end = (CURL_AUTHORITY[scheme] and s:find("[/?#]", from)) or tail
  local at
  for i = auth_end - 1, from, -1 do
    if s:byte(i) == 64 then at = i; break end        -- "@"
  end
  local host_from = at and at + 1 or from
  local parts = { scheme = scheme, from = from, at = at, host_from = host_from,
    host_end = (s:find("[/?#]", host_from) or #s + 1) - 1 }
  if at then
    local colon = s:find(":", from, true)
    parts.colon = colon and colon < at and colon or nil
  end
  return parts
end

local function parse_hostport(text, u)
  local host, after
  if text:sub(1, 1) == "[" then
    host, after = text:match("^%[([^%]]*)%](.*)$")
    if not host then return "the [ of an IPv6 address is not closed" end
    u.ipv6 = true
  else
    host, after = text:match("^([^:]*)(.*)$")
  end
  u.host = host ~= "" and host or nil
  if after == "" then return nil end
  local port = after:match("^:(%d+)$")
  if not port then
    return after == ":" and "the port is empty" or "the port must be a number"
  end
  u.port = tonumber(port)
  if u.port < 1 or u.port > 65535 then return "the port must be 1-65535" end
  return nil
end

local function parse_query(query, u)
  for pair in query:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=(.*)$")
    k, v = M.decode(k or pair), v and M.decode(v) or ""
    u.params[#u.params + 1] = { k, v, pair }
    u.query[k] = v
  end
end

function M.parse(s)
  if type(s) ~= "string" then return nil, "a URL must be a string, not a " .. type(s) end
  local p = split(s)
  if not p then return nil, "not a URL (expected scheme://host...)" end
  local u = { scheme = p.scheme, query = {}, params = {}, default_port = DEFAULT_PORTS[p.scheme] }
  if p.at then
    local user_end = (p.colon or p.at) - 1
    u.raw_user = s:sub(p.from, user_end)
    u.raw_password = p.colon and s:sub(p.colon + 1, p.at - 1) or nil
    u.user = M.decode(u.raw_user)
    u.password = u.raw_password and M.decode(u.raw_password)
  end
  local why = parse_hostport(s:sub(p.host_from, p.host_end), u)
  if why then return nil, why end
  local rest = s:sub(p.host_end + 1)
  local path, query, fragment = rest:match("^([^?#]*)%??([^#]*)#?(.*)$")
  u.path, u.fragment = path, fragment ~= "" and fragment or nil
  parse_query(query, u)
  return u
end

-- s with the password of its userinfo and of a ?password= option as ***.
function M.redact(s)
  if type(s) ~= "string" then return s end
  local p = split(s)
  if p and p.colon then
    s = s:sub(1, p.colon) .. "***" .. s:sub(p.at)
  end
  return (s:gsub("([?&][Pp][Aa][Ss][Ss][Ww][Oo][Rr][Dd]=)[^&#]*", "%1***"))
end

local REDIS_OPTIONS = { connect_timeout = true, timeout = true }

-- A redis:// URL checked: redis://[[user]:password@]host[:port][/db]
-- [?connect_timeout=S&timeout=S].  A bare "pw@" is refused, not guessed
-- at: it could be a user or a password.
function M.redis(s)
  local u, why = M.parse(s)
  if u and u.scheme == "rediss" then return nil, "TLS (rediss://) is not supported" end
  if not u then return nil, why end
  if u.scheme ~= "redis" then return nil, "not a redis:// URL" end
  for _, kv in ipairs(u.params) do
    local n = tonumber(kv[2])
    if not REDIS_OPTIONS[kv[1]] or not n or n < 0 then
      return nil, string.format("unknown or bad option %q (connect_timeout=SECONDS, " ..
        "timeout=SECONDS)", kv[3])
    end
  end
  if u.raw_user and not u.raw_password then
    return nil, "the password goes after a colon, before the @"
  end
  if not u.host then return nil, "no host" end
  local db = 0
  if u.path ~= "" and u.path ~= "/" then
    db = tonumber(u.path:match("^/(%d+)$"))
    if not db then return nil, "the path must be a database number, like /2" end
  end
  return { host = u.host, port = u.port or DEFAULT_PORTS.redis, db = db,
    user = u.user ~= "" and u.user or nil, password = u.password ~= "" and u.password or nil,
    connect_timeout = tonumber(u.query.connect_timeout), timeout = tonumber(u.query.timeout) }
end

return M
