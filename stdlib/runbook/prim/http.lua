-- runbook.prim.http: the `http` global.
--
--   local r = http.get(url, { headers = {...}, timeout = 5, expect = 200 })
--   http.post(url, { json = { reason = "deploy" }, expect = { 200, 201 } })
--   http.request("PUT", url, opts)  or  http.request { method = "PUT", url = url, ... }
--   also http.head/put/patch/delete(url, opts)
--
-- Options: headers (a table name -> value), body (a string), json (a value
-- sent as JSON, with Content-Type and Accept set), timeout (30 s for the
-- whole request), connect_timeout (10 s, or timeout if less), expect (a
-- status or a list of them: any other raises with the status and the start
-- of the body; nil or false accepts any status), cacert (a CA file),
-- insecure = true (no TLS verification: shown and recorded), follow (true),
-- max_redirects (5), fresh = true (a new connection, not kept: what a TLS
-- check wants), readonly = true (runs for real in a dry run), quiet =
-- true (no "http GET url" line on the screen), secret = true (the body is a
-- secret: marked before anything is shown or recorded, left out of error
-- messages, and each string and number r:json() decodes from it is marked
-- too).
--
-- r = { status, headers (lower-case names), body, time (s), url (after
-- redirects), redirects, reused, tls = { subject, issuer, starts, expires,
-- expires_in_days, verified } for https } and r:json() decodes the body.
--
-- The transfer is C (src/lib_http.c); this file is the policy: options are
-- checked by name, `json` is encoded, `expect` is enforced, dry run runs
-- GET/HEAD for real and simulates other methods unless readonly = true, and
-- every call is a `call` event whose credentials (URL passwords,
-- Authorization/Cookie/token headers) never reach the transcript or the
-- screen.  TLS is verified unless the call says insecure = true, which is
-- shown and recorded.
local api = require("runbook.api")
local bounded = require("runbook.bounded")
local chttp = require("runbook.lazy")("runbook.http")
local cjson = require("cjson")
local networds = require("runbook.networds")
local context = require("runbook.context")
local errors = require("runbook.errors")
local record = require("runbook.record")
local ui = require("runbook.ui")
local urls = require("runbook.url")

local OPTIONS = {
  headers = "table", body = "string", json = "any", timeout = "number",
  connect_timeout = "number", expect = "any", insecure = "boolean", cacert = "string",
  max_redirects = "number", follow = "boolean", readonly = "boolean", quiet = "boolean",
  fresh = "boolean", secret = "boolean",
}
local READS = { GET = true, HEAD = true }   -- DESIGN.md: these run for real in a dry run

local function option_list()
  local names = {}
  for k in pairs(OPTIONS) do names[#names + 1] = k end
  table.sort(names)
  return table.concat(names, ", ")
end

-- scheme://user:password@host -> scheme://user:***@host (runbook.url)
local function display_url(url)
  return urls.redact(url)
end

-- Reading a URL (urls.parse, urls.redact) cost about twice the rest of a
-- call's Lua when done per call: what a URL without a password parses to,
-- and how it is shown, are kept by URL string (runbook.bounded).  A URL
-- with a password is read anew every time, so its credentials are marked
-- secret on every call.
local URLS = bounded(256)

local function read_url(url)
  local c = URLS.items[url]
  if c then return c.u, nil, c.display end
  local u, why = urls.parse(url)
  local display = display_url(url)
  if u and not (u.raw_password and u.raw_password ~= "") then
    URLS:put(url, { u = u, display = display })
  end
  return u, why, display
end

local function excerpt(s, n)
  s = s:gsub("%s+", " "):gsub("^ ", "")
  if #s > n then s = s:sub(1, n) .. "..." end
  return (string.format("%q", s):gsub("\\\n", "\\n"))
end

-- Header names whose values are credentials.
local function is_credential(name)
  local n = name:lower()
  return n == "authorization" or n == "proxy-authorization" or n == "cookie"
    or n:find("token", 1, true) ~= nil or n:find("api-key", 1, true) ~= nil
    or n:find("apikey", 1, true) ~= nil or n:find("secret", 1, true) ~= nil
    or n:find("password", 1, true) ~= nil
end

-- Mark a credential secret: the whole value, and its parts that are long
-- enough to be secrets of their own (the token of "Bearer <token>", each
-- cookie's value), so they are hidden wherever they show up later.
local function mark_secret(value)
  record.secret(value)
  for part in value:gmatch("[^%s;=,]+") do
    if #part >= 8 then record.secret(part) end
  end
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local q = {}
    for j = 1, 4 do
      local k = (n >> (6 * (4 - j))) & 63
      q[j] = B64:sub(k + 1, k + 1)
    end
    if not b then q[3] = "=" end
    if not c then q[4] = "=" end
    out[#out + 1] = table.concat(q)
  end
  return table.concat(out)
end

-- A URL's password is hidden by the transcript's URL rule; curl also sends
-- it as "Authorization: Basic base64(user:password)", which a server may
-- echo, so that form is marked secret too.
local function mark_url_credentials(u)
  if not u.raw_password or u.raw_password == "" then return end
  record.secret(u.raw_password)
  record.secret(u.password)
  record.secret(base64(u.user .. ":" .. u.password))
end

local Response = {}
Response.__index = Response

-- r:json(): the body decoded, or an error naming the URL and what came.
-- The body of a secret = true response is a secret, and so is each value
-- decoded from it.
function Response:json()
  if self.dry_run then return {} end
  local ok, value = pcall(require("runbook.json").decode, self.body)
  if not ok then
    local ctype = self.headers["content-type"]
    errors.raise("server", string.format("http %s %s: the response is not JSON (status %d%s; %s)",
      self.method, display_url(self.url), self.status,
      ctype and (", content-type " .. ctype) or "",
      self.secret and "body not shown: secret = true" or ("body: " .. excerpt(self.body, 120))),
      { primitive = "http", status = self.status })
  end
  if self.secret then record.secret_values(value) end
  return value
end

local function tls_view(t)
  local v = { subject = t.subject, issuer = t.issuer, starts = t.starts, expires = t.expires,
    verified = t.verified }
  if t.expires and t.expires >= 0 then v.expires_in_days = (t.expires - os.time()) / 86400 end
  return v
end

-- expect: nil or false (any status is a result), a status, or a list.
local function expect_list(verb, expect)
  if expect == nil or expect == false then return nil end
  local list = type(expect) == "table" and expect or { expect }
  if #list == 0 then return nil, verb .. ": expect must be a status or a list of statuses" end
  for _, s in ipairs(list) do
    if math.type(s) ~= "integer" then
      return nil, verb .. ": expect must be a status or a list of statuses, like 200 or {200, 204}"
    end
  end
  return list
end

local function check_expect(r, list, who)
  if list == nil then return end
  for _, s in ipairs(list) do
    if r.status == s then return end
  end
  local statuses = {}
  for i, s in ipairs(list) do statuses[i] = tostring(s) end
  errors.raise("server", string.format("%s: got status %d, expected %s (%s)", who, r.status,
    table.concat(statuses, " or "),
    r.secret and "body not shown: secret = true" or ("body: " .. excerpt(r.body, 200))),
    { primitive = "http", status = r.status })
end

-- Check the options by name and type; returns nil, message on misuse.
local function check_options(verb, opts)
  if opts == nil then return {} end
  if type(opts) ~= "table" then return nil, verb .. ": options must be a table" end
  for k, v in pairs(opts) do
    local want = OPTIONS[k]
    if want == nil then
      return nil, string.format("%s: unknown option %q (options: %s)", verb, tostring(k), option_list())
    end
    if want ~= "any" and type(v) ~= want then
      return nil, string.format("%s: %s must be a %s, not a %s", verb, k, want, type(v))
    end
  end
  for _, k in ipairs({ "timeout", "connect_timeout" }) do
    if opts[k] ~= nil and not (opts[k] > 0) then
      return nil, string.format("%s: %s must be a positive number of seconds", verb, k)
    end
  end
  if opts.max_redirects ~= nil and (math.type(opts.max_redirects) ~= "integer" or opts.max_redirects < 0) then
    return nil, verb .. ": max_redirects must be a whole number >= 0"
  end
  if opts.body ~= nil and opts.json ~= nil then
    return nil, verb .. ": give body or json, not both"
  end
  return opts
end

-- The request headers as curl lines, and as recorded (credentials hidden).
local function build_headers(verb, given)
  local lines, recorded, names = {}, {}, {}
  for name, value in pairs(given or {}) do
    if type(name) ~= "string" or not name:match("^[%w!#$%%&'*+.^_`|~-]+$") then
      return nil, string.format("%s: bad header name %q", verb, tostring(name))
    end
    if type(value) == "number" then value = tostring(value) end
    if type(value) ~= "string" or value:find("[\r\n]") then
      return nil, string.format("%s: header %s must be a one-line string", verb, name)
    end
    lines[#lines + 1] = name .. ": " .. value
    names[name:lower()] = true
    if is_credential(name) then
      mark_secret(value)
      recorded[name] = "***"
    else
      recorded[name] = value
    end
  end
  return lines, recorded, names
end

-- The body to send: o.body, or o.json encoded (adding Content-Type and
-- Accept unless the call set them); nil, message when json cannot be.
local function request_body(verb, o, lines, names)
  if o.json == nil then return o.body end
  local ok, encoded = pcall(cjson.encode, o.json)
  if not ok then return nil, verb .. ": json cannot be encoded: " .. tostring(encoded) end
  if not names["content-type"] then lines[#lines + 1] = "Content-Type: application/json" end
  if not names["accept"] then lines[#lines + 1] = "Accept: application/json" end
  return encoded
end

-- A call's arguments checked and turned into the request: its options,
-- expected statuses, header lines (and as recorded) and body; nil,
-- message on misuse.
local function prepare(verb, method, url, opts)
  local u, why, display
  if type(url) == "string" then u, why, display = read_url(url) end
  if u and (u.scheme ~= "http" and u.scheme ~= "https" or not u.host) then u, why = nil, nil end
  if not u then
    return nil, string.format("%s: expected an http:// or https:// URL, got %s%s", verb,
      type(url) == "string" and string.format("%q", display_url(url)) or type(url),
      why and type(url) == "string" and url:match("^%a[%w+.-]*://") and (" (" .. why .. ")") or "")
  end
  local o, err = check_options(verb, opts)
  if not o then return nil, err end
  local expect
  expect, err = expect_list(verb, o.expect)
  if err then return nil, err end
  local lines, recorded, names = build_headers(verb, o.headers)
  if not lines then return nil, recorded end
  local body
  body, err = request_body(verb, o, lines, names)
  if err then return nil, err end
  return { method = method, url = url, o = o, expect = expect, lines = lines, recorded = recorded,
    body = body, display = display, parsed = u,
    who = "http " .. method .. " " .. display }
end

-- What the `call` event records of the request (credentials hidden).
local function recorded_args(q)
  local o = q.o
  return { method = q.method, url = q.display,
    headers = next(q.recorded) and q.recorded or nil, body_bytes = q.body and #q.body or nil,
    timeout = o.timeout or 30, expect = q.expect, insecure = o.insecure or nil, cacert = o.cacert,
    follow = o.follow, max_redirects = o.max_redirects, readonly = o.readonly, fresh = o.fresh }
end

-- The request made for real (src/lib_http.c), its status checked.
local function perform(q)
  local o, who = q.o, q.who
  if o.insecure then
    ui.print("  " .. ui.style("yellow", "warning:") .. " TLS verification is off for " .. who ..
      " (insecure=true)")
  end
  if not o.quiet then ui.print("  " .. ui.style("dim", who)) end
  local r, f = chttp.request({ method = q.method, url = q.url, headers = q.lines, body = q.body,
    timeout = o.timeout or 30, connect_timeout = o.connect_timeout, insecure = o.insecure,
    cacert = o.cacert, max_redirects = o.max_redirects, follow = o.follow, fresh = o.fresh,
    who = who })
  if r == nil then networds.raise("http", f) end
  r.method, r.secret = q.method, o.secret
  if r.tls then r.tls = tls_view(r.tls) end
  setmetatable(r, Response)
  check_expect(r, q.expect, who)
  return r
end

-- A --scenario rule's result, filled in as a real one.
local function complete(q, r)
  r.status = math.tointeger(r.status) or 200
  r.headers = r.headers or {}
  r.body = r.body or ""
  r.time, r.url, r.method, r.redirects = r.time or 0, r.url or q.url, q.method, r.redirects or 0
  r.scenario, r.secret = true, q.o.secret
  return setmetatable(r, Response)
end

-- What the `call` event records of the response.
local function summary(r)
  return { status = r.status, bytes = #r.body, time = r.time,
    url = r.redirects > 0 and display_url(r.url) or nil,
    redirects = r.redirects > 0 and r.redirects or nil, reused = r.reused,
    tls = r.tls and { subject = r.tls.subject, issuer = r.tls.issuer,
      expires = r.tls.expires, verified = r.tls.verified } or nil }
end

-- The functions of a request's spec: made once, they find it in spec.q.
local function spec_mark(r) record.secret(r.body) end
local function spec_stand_in(spec)
  local q = spec.q
  return setmetatable({ status = 200, headers = {}, body = "", time = 0, url = q.url,
    method = q.method, redirects = 0, dry_run = true }, Response)
end
local function spec_perform(spec) return perform(spec.q) end
local function spec_complete(r, spec) return complete(spec.q, r) end

-- The api.call of a prepared request: recorded, simulated in a dry run
-- unless it only reads, replaced by a --scenario rule, or made.
local function call_spec(q)
  local o = q.o
  return {
    primitive = "http",
    args = recorded_args(q),
    mutating = not READS[q.method] and not o.readonly,
    describe = q.who,
    secret = o.secret,
    mark = spec_mark,
    stand_in = spec_stand_in,
    perform = spec_perform,
    complete = spec_complete,
    summary = summary,
    q = q,
  }
end

local function request(verb, method, url, opts)
  local run = context.need(verb)
  local q, err = prepare(verb, method, url, opts)
  if not q then errors.usage(err, "http") end
  mark_url_credentials(q.parsed)
  local ok, res = api.call(run, call_spec(q))
  if not ok then error(res, 0) end
  if res.scenario then check_expect(res, q.expect, q.who) end
  return res
end

local http = {}

-- http.request(method, url, opts) or http.request{method=, url=, opts...}
function http.request(method, url, opts)
  if type(method) == "table" then
    opts = {}
    for k, v in pairs(method) do
      if k ~= "method" and k ~= "url" then opts[k] = v end
    end
    method, url = method.method or "GET", method.url
  end
  if type(method) ~= "string" or not method:match("^%a[%a-]*$") then
    errors.usage("http.request: method must be a word like \"GET\" or \"PUT\"", "http")
  end
  return request("http.request", method:upper(), url, opts)
end

for _, m in ipairs({ "get", "head", "post", "put", "patch", "delete" }) do
  local verb, method = "http." .. m, m:upper()
  http[m] = function(url, opts)
    return request(verb, method, url, opts)
  end
end

return http
