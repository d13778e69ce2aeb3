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
-- tls.check(opts) -> certs, problems
--   Every endpoint and file of the target's `tls` table (docs/targets.md;
--   the run's target, or opts.target);
--   each cert also gets status = "ok" | "due" (under warn_days) | "expired",
--   and each one is logged.  A check that fails (connection refused, no
--   such file) is logged and listed in problems, not raised, so one dead
--   endpoint does not hide the others.
--     local certs, problems = tls.check({ warn_days = 21 })
--
-- tls.parse_date(text) -> epoch | nil
--   OpenSSL's date form, "Jan  2 03:04:05 2026 GMT" (as printed by
--   `openssl x509 -enddate`), as seconds since the epoch, in UTC whatever
--   the machine's time zone.
--     tls.parse_date("notAfter=Jun  1 12:00:00 2025 GMT")  --> 1748779200
--
-- tls.days_left(epoch) -> days from now (a float; negative: in the past).
-- tls.soonest(certs) -> the cert with the fewest days left, or nil.
--
-- tls.renew_command(argv, opts) -> argv, cb
--   The renew command of target.tls (a list) as the runbook runs it.  When
--   it runs certbot's `renew` (argv[1] or a word after env/sudo is named
--   certbot), cb = { config_dir, server, notes = {...} }, else cb is nil
--   and argv is the list as given, with --dry-run appended for opts.dry_run.
--   For certbot, whatever argv lacks of:
--     --no-random-sleep-on-renew   without a terminal certbot otherwise
--                                  sleeps up to 8 minutes before renewing
--     --force-renewal              with opts.force
--     --dry-run                    with opts.dry_run, and then --server URL
--                                  when argv has none: certbot's --dry-run
--                                  goes to Let's Encrypt staging instead of
--                                  the server the certificates' renewal
--                                  configs (CONFIG_DIR/renewal/*.conf) name
--   cb.notes says what was added and why, for the log.
--     local argv, cb = tls.renew_command({ "certbot", "renew" }, { dry_run = true })
--
-- tls.certbot_outcome(text) -> o
--   What certbot renew printed, read: o = { nothing_due (no renewal was
--   attempted: every certificate is not yet due), not_due = { paths },
--   renewed = { paths }, failed = { paths } }.
local io = require("io")
local errors = require("runbook.errors")
local verbs = require("runbook.verbs")
local exec, log, target = verbs.exec, verbs.log, verbs.target
local http = require("http")

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
    errors.raise("usage", string.format("tls.endpoint: expected an https:// URL, got %s", tostring(url)), { primitive = "tls" })
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
  if type(path) ~= "string" or path == "" then errors.raise("usage", "tls.file: expected a file path", { primitive = "tls" }) end
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

function tls.check(opts)
  opts = opts or {}
  local cfg = ((opts.target or (type(target) == "table" and target)) or {}).tls
  if type(cfg) ~= "table" then
    errors.raise("failed", "tls.check: no tls table for this target (add targets.<name>.tls = { endpoints = {...}, "
      .. "files = {...} } to the config; see docs/targets.md)", { primitive = "tls" })
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

-- Let's Encrypt's production directory: certbot's default server, the one
-- whose --dry-run rightly goes to staging.
local LE_PRODUCTION = "https://acme-v02.api.letsencrypt.org/directory"
local WRAPPERS = { env = true, sudo = true, doas = true, nice = true, ionice = true }

local function basename(a)
  return (a:match("([^/]+)$")) or a
end

-- Position of certbot in argv (directly, or after env/sudo and their
-- arguments), or nil when the command is not certbot renew.
local function certbot_index(argv)
  for i, a in ipairs(argv) do
    local b = basename(a)
    if b == "certbot" or b == "certbot-auto" or b == "letsencrypt" then
      for j = i + 1, #argv do
        if argv[j] == "renew" then return i end
      end
      return nil
    end
    if not (WRAPPERS[b] or a:sub(1, 1) == "-" or a:find("=", 1, true)) then return nil end
  end
  return nil
end

-- The value of a certbot flag (`--flag VALUE` or `--flag=VALUE`) after
-- position first, or true when present without a value, or nil.
local function flag_value(argv, first, name)
  for i = first, #argv do
    local a = argv[i]
    if a == name then return argv[i + 1] or true end
    if a:sub(1, #name + 1) == name .. "=" then return a:sub(#name + 2) end
  end
  return nil
end

-- The server = line of each renewal config certbot would renew, as a list
-- of distinct URLs, or nil and why not.
local function renewal_servers(config_dir, cert_name)
  local files = {}
  if type(cert_name) == "string" then
    files[1] = config_dir .. "/renewal/" .. cert_name .. ".conf"
  else
    local r = exec { "find", config_dir .. "/renewal", "-maxdepth", "1", "-type", "f", "-name", "*.conf",
      readonly = true, quiet = true, check = false, timeout = 15 }
    if r.code ~= 0 then
      return nil, string.format("cannot list %s/renewal: %s", config_dir, (r.stderr:gsub("%s+$", "")))
    end
    for path in r.stdout:gmatch("[^\n]+") do files[#files + 1] = path end
    table.sort(files)
  end
  local seen, servers = {}, {}
  for _, path in ipairs(files) do
    local f, err = io.open(path, "r")
    if not f then return nil, "cannot read " .. tostring(err) end
    local text = f:read("a")
    f:close()
    local url = text:match("\nserver%s*=%s*(%S+)") or text:match("^server%s*=%s*(%S+)") or LE_PRODUCTION
    if not seen[url] then
      seen[url] = true
      servers[#servers + 1] = url
    end
  end
  return servers
end

local function add(argv, cb, flag, why)
  argv[#argv + 1] = flag
  cb.notes[#cb.notes + 1] = flag .. " added: " .. why
end

-- certbot's --dry-run keeps the server only when it is on the command
-- line; the renewal configs' server otherwise gives way to staging.
local function dry_run_server(argv, at, cb)
  if flag_value(argv, at, "--server") then return end
  local servers, why = renewal_servers(cb.config_dir, flag_value(argv, at, "--cert-name"))
  if servers == nil then
    cb.notes[#cb.notes + 1] = string.format("no --server for the dry run (%s): certbot's --dry-run "
      .. "then goes to Let's Encrypt staging; add --server URL to tls.renew", why)
  elseif #servers == 1 and servers[1] ~= LE_PRODUCTION then
    cb.server = servers[1]
    add(argv, cb, "--server", "the dry run goes to the server the renewal configs name, not to "
      .. "Let's Encrypt staging")
    argv[#argv + 1] = servers[1]
  elseif #servers > 1 then
    cb.notes[#cb.notes + 1] = string.format("the certificates renew from %d ACME servers (%s): certbot's "
      .. "--dry-run sends them all to Let's Encrypt staging; use --cert-name in tls.renew", #servers,
      table.concat(servers, ", "))
  end
end

function tls.renew_command(argv, opts)
  opts = opts or {}
  local out = {}
  for i, a in ipairs(argv) do out[i] = tostring(a) end
  local at = certbot_index(out)
  if at == nil then
    if opts.dry_run then out[#out + 1] = "--dry-run" end
    return out, nil
  end
  local dir = flag_value(out, at, "--config-dir")
  local cb = { config_dir = type(dir) == "string" and dir or "/etc/letsencrypt", notes = {} }
  if not flag_value(out, at, "--no-random-sleep-on-renew") then
    add(out, cb, "--no-random-sleep-on-renew", "without a terminal certbot sleeps up to 8 minutes first")
  end
  if opts.force and not flag_value(out, at, "--force-renewal") and not flag_value(out, at, "--renew-by-default") then
    add(out, cb, "--force-renewal", "-p force=yes")
  end
  if opts.dry_run then
    if not flag_value(out, at, "--dry-run") then out[#out + 1] = "--dry-run" end
    dry_run_server(out, at, cb)
  end
  return out, cb
end

-- certbot renew's summary lists certificates by path, each followed by
-- "(success)", "(failure)" or "(skipped)", under headers that say which.
function tls.certbot_outcome(text)
  text = text or ""
  local o = { not_due = {}, renewed = {}, failed = {} }
  for path, what in text:gmatch("(/%S+%.pem)[^\n]-%((%a+)%)") do
    if what == "skipped" then o.not_due[#o.not_due + 1] = path
    elseif what == "success" then o.renewed[#o.renewed + 1] = path
    elseif what == "failure" then o.failed[#o.failed + 1] = path end
  end
  o.nothing_due = text:find("No renewals were attempted", 1, true) ~= nil
    or (#o.renewed == 0 and #o.failed == 0 and text:find("not yet due for renewal", 1, true) ~= nil)
  return o
end

return tls
