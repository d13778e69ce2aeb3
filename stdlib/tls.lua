-- tls: how long certificates have left, on the wire and on disk.
--
--   local tls = require("tls")
--
-- tls.endpoint(url, opts) -> cert
--   The certificate an HTTPS endpoint serves, read from the http
--   primitive's r.tls (a GET, so it runs for real in a dry run too).
--     local c = tls.endpoint("https://app.example/", { cacert = target.tls.cacert })
--     log.info("%s expires %s (%.1f days)", c.name, c.expires_text, c.days_left)
--   opts: cacert, timeout (s, default 10).  A certificate that fails
--   verification (expired, unknown CA, wrong name) is read again with
--   insecure = true, so its expiry is still reported; cert.verified is
--   false and cert.verify_error says why.
--
-- tls.file(path, opts) -> cert
--   A PEM certificate on disk, through
--   `openssl x509 -enddate -noout -in FILE` (exec, readonly: it runs in a
--   dry run).  opts.timeout (s, default 15).
--     local c = tls.file("/etc/ssl/app/fullchain.pem")
--
--   A cert is { kind = "endpoint"|"file", name = url|path, expires = epoch
--   seconds, expires_text = "2026-01-31 12:00 UTC", days_left = number
--   (negative once expired), verified = bool (endpoints), subject, issuer }.
--
-- tls.check(cfg, opts) -> certs, problems
--   Every endpoint and file of a target's `tls` table (docs/targets.md);
--   each cert also gets status = "ok" | "due" (under warn_days) | "expired",
--   and each one is logged.  A check that fails (connection refused, no
--   such file) is logged and listed in problems, not raised, so one dead
--   endpoint does not hide the others.
--     local certs, problems = tls.check(target.tls, { warn_days = 21 })
--
-- tls.parse_date(text) -> epoch | nil
--   OpenSSL's date form, "Jan  2 03:04:05 2026 GMT" (as printed by
--   `openssl x509 -enddate`), as seconds since the epoch, in UTC whatever
--   the machine's time zone.
--     tls.parse_date("notAfter=Jun  1 12:00:00 2025 GMT")  --> 1748779200
--
-- tls.days_left(epoch) -> days from now (a float; negative: in the past).
-- tls.soonest(certs) -> the cert with the fewest days left, or nil.
local tls = {}

local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6,
  Jul = 7, Aug = 8, Sep = 9, Oct = 10, Nov = 11, Dec = 12 }

-- Days since 1970-01-01 of a civil date (Howard Hinnant's days_from_civil):
-- plain arithmetic, so the local time zone never leaks into a UTC date the
-- way os.time() would let it.
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = (153 * mp + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

function tls.parse_date(text)
  if type(text) ~= "string" then return nil end
  local mon, d, hh, mm, ss, y = text:match("(%a%a%a)%s+(%d+)%s+(%d+):(%d+):(%d+)%s+(%d%d%d%d)")
  if not mon or not MONTHS[mon] then return nil end
  return days_from_civil(tonumber(y), MONTHS[mon], tonumber(d)) * 86400
    + tonumber(hh) * 3600 + tonumber(mm) * 60 + tonumber(ss)
end

function tls.days_left(epoch)
  return (epoch - os.time()) / 86400
end

local function finish(cert)
  cert.days_left = tls.days_left(cert.expires)
  cert.expires_text = os.date("!%Y-%m-%d %H:%M UTC", cert.expires)
  return cert
end

local function from_response(url, r, verified, why)
  local t = r.tls
  if t == nil then
    error(string.format("tls: %s answered without TLS information (is it an https:// URL?)", url), 0)
  end
  local expires = t.expires
  if (expires == nil or expires < 0) and t.expires_in_days then  -- a --scenario result
    expires = os.time() + math.floor(t.expires_in_days * 86400)
  end
  if expires == nil or expires < 0 then
    error(string.format("tls: %s: the certificate's expiry date could not be read", url), 0)
  end
  return finish({ kind = "endpoint", name = url, expires = expires, subject = t.subject,
    issuer = t.issuer, verified = verified and t.verified ~= false, verify_error = why })
end

function tls.endpoint(url, opts)
  opts = opts or {}
  if type(url) ~= "string" or not url:lower():match("^https://") then
    error(string.format("tls.endpoint: expected an https:// URL, got %s", tostring(url)), 2)
  end
  -- fresh: the certificate served now, not that of a connection kept from
  -- before a reload.
  local req = { timeout = opts.timeout or 10, cacert = opts.cacert, fresh = true }
  local ok, r = pcall(http.get, url, req)
  if ok then return from_response(url, r, true) end
  local why = tostring(r)
  if not why:find("TLS certificate verify failed", 1, true) then error(why, 0) end
  -- An expired or untrusted certificate is exactly what this check is for:
  -- read it again without verification to report its dates.
  log.warn("%s: certificate does not verify; reading its dates without verification", url)
  req.insecure = true
  r = http.get(url, req)
  return from_response(url, r, false, why)
end

function tls.file(path, opts)
  opts = opts or {}
  if type(path) ~= "string" or path == "" then error("tls.file: expected a file path", 2) end
  local r = exec { "openssl", "x509", "-enddate", "-noout", "-in", path,
    readonly = true, check = false, quiet = true, timeout = opts.timeout or 15 }
  if r.code ~= 0 then
    error(string.format("tls: openssl cannot read the certificate %s (exit %d: %s; check the path "
      .. "in target.tls.files)", path, r.code, (r.stderr:gsub("%s+$", ""):sub(1, 200))), 0)
  end
  local expires = tls.parse_date(r.stdout:match("notAfter=([^\n]+)") or "")
  if expires == nil then
    error(string.format("tls: no notAfter date in openssl's output for %s: %q", path,
      r.stdout:sub(1, 200)), 0)
  end
  return finish({ kind = "file", name = path, expires = expires })
end

local function status_of(cert, warn_days)
  if cert.days_left < 0 then return "expired" end
  if cert.days_left < warn_days then return "due" end
  return "ok"
end

local function log_cert(c)
  local text = string.format("%s %s: expires %s, %.1f days left%s", c.kind, c.name, c.expires_text,
    c.days_left, c.kind == "endpoint" and not c.verified and " (does not verify)" or "")
  if c.status == "ok" then log.info("%s", text)
  elseif c.status == "due" then log.warn("%s (renew: under %d days)", text, c.warn_days)
  else log.error("%s: EXPIRED", text) end
end

function tls.check(cfg, opts)
  opts = opts or {}
  if type(cfg) ~= "table" then
    error("tls.check: no tls table for this target (add targets.<name>.tls = { endpoints = {...}, "
      .. "files = {...} } to the config; see docs/targets.md)", 2)
  end
  local warn_days = opts.warn_days or cfg.warn_days or 21
  local certs, problems = {}, {}
  local function one(kind, name, fn)
    local ok, c = pcall(fn, name, { cacert = cfg.cacert, timeout = opts.timeout })
    if ok then
      c.warn_days = warn_days
      c.status = status_of(c, warn_days)
      certs[#certs + 1] = c
      log_cert(c)
    else
      problems[#problems + 1] = string.format("%s %s: %s", kind, name, tostring(c))
      log.error("%s", problems[#problems])
    end
  end
  for _, url in ipairs(cfg.endpoints or {}) do one("endpoint", url, tls.endpoint) end
  for _, path in ipairs(cfg.files or {}) do one("file", path, tls.file) end
  return certs, problems
end

function tls.soonest(certs)
  local best
  for _, c in ipairs(certs or {}) do
    if best == nil or c.days_left < best.days_left then best = c end
  end
  return best
end

return tls
