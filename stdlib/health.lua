-- health: health endpoints with expectations and timings, the detailed
-- health document (and its database pool), and what they mean for the
-- incident's severity.
--
--   local health = require("health")
--
-- health.check(checks, opts) -> results
--   checks: a URL, or a list of URLs and tables
--     { url = "https://app/health", name = "api", expect = 200 | { 200, 204 },
--       contains = "ok", json = { status = "ok" }, timeout = 5, cacert = "/etc/ca.pem" }
--   (default target.health).  expect defaults to any 2xx.  Each check is
--   a GET (so it runs in a dry run too), all checks at once, each
--   opts.samples times (default 1) one after the other.  opts: timeout
--   (10 s a request), slow_after (target.slow_after, else 5 s), samples,
--   quiet (print nothing).  Each result:
--     { name, url, ok (every sample passed), status (the last one), time
--       (the slowest sample, s), times, failures, samples, slow (time >
--       slow_after), intermittent (some samples failed, not all),
--       problem (what was wrong, or nil), body (first 200 bytes) }
--   A refused connection or timeout is a failed sample, not an error.
--     for _, r in ipairs(health.check(target.health, { samples = 3 })) do
--       log.info("%s: %s in %.0f ms", r.url, r.ok and "ok" or r.problem, r.time * 1000)
--     end
--
-- health.summary(results) -> s
--   s = { total, ok, failing, slow, intermittent, slowest (a result), text }
--     log.info(health.summary(results).text)  --> "3 checks: 2 ok, 1 failing, 0 slow; slowest 41 ms (...)"
--
-- health.detailed(url, opts) -> d
--   GET the detailed health document (default target.detailed_health) and
--   read it, whatever the status it came with (an app with a dependency
--   down answers 503 with the document that says which):
--   d = { url, ok, status, time, doc (the decoded JSON), pool,
--   components = { {name, status, ok, down, error} ... }, down (the
--   components that are down), problems = { "text" ... }, findings }.
--   A component is an entry (top level, or under components, checks,
--   dependencies, services) with a status word or an ok/healthy/up
--   boolean: {"redis":{"ok":false,"error":"connect ECONNREFUSED ..."}};
--   error is its error, message, reason or details.error.  One whose
--   status is not ok/healthy/up/pass is a problem; down when the word
--   says so (down, error, failed, unreachable, ...) or the boolean is
--   false, not when it is merely "degraded".
--   The pool is the first table named `pool` with a count in it (db.pool,
--   database.pool, pool, checks.db.pool ...), its counts under the names
--   pools use (size/max, total/totalCount, in_use/active, idle/idleCount,
--   waiting/waitingCount/pending):
--     { size, in_use, waiting, idle, usage (in_use / size), path = "db.pool",
--       size_is_open (size is the connections open, not the most allowed) }
--   Requests waiting for a connection, or every connection of a pool at
--   its maximum in use, are problems.
--     local d = health.detailed()
--     if d.pool then log.info("pool %d/%d in use, %d waiting", d.pool.in_use, d.pool.size, d.pool.waiting) end
--
-- health.probe(checks, detailed_url, opts) -> results, d
--   health.check's results and health.detailed's d (nil without a URL),
--   with every sample of every check and the detailed health sent at once
--   (parallel): a hung app costs one request timeout (opts.timeout, 10 s),
--   not one per sample and one more for the detailed health.  Samples are
--   then concurrent, not one after the other.
--     local results, d = health.probe(nil, target.detailed_health, { samples = 3 })
--
-- health.await(checks, opts) -> ok, s
--   After an action meant to bring the service back (a restart): polls the
--   checks until every one passes, every opts.every (0.5) s for up to
--   opts.timeout (20) s; ok is false when the time runs out; s is the last
--   summary.  opts.what names the wait.  When the action was simulated
--   (opts.simulated; default: the dry_run global) nothing changed, so it
--   reads the real state once and logs "would wait up to 20 s for WHAT
--   (the real state is still down: ...)"; ok is true, s.simulated true.
--     local ok, s = health.await(nil, { timeout = 20, simulated = r.dry_run, what = "api healthy" })
--
-- HTTPS with a private CA: a check's cacert, else the target's tls.cacert
-- (the same key tls-renewal reads); health.detailed takes opts.cacert.
--
-- The target's keys (health, detailed_health, slow_after, tls.cacert) are
-- read from the run's target, or from opts.target in every function that
-- takes opts (docs/authoring.md, "The stdlib modules").
--
-- health.pool(doc) -> pool | nil    (the search health.detailed does)
--
-- health.findings(results) -> findings for incident.propose:
--   every check failing -> outage; some failing -> feature_down; failing
--   now and then -> intermittent; slower than slow_after -> slow.
--   health.detailed's d.findings are the same kind of list.
local errors = require("runbook.errors")
local verbs = require("runbook.verbs")
local dry_run, json, log, parallel, poll, print, target =
  verbs.dry_run, verbs.json, verbs.log, verbs.parallel, verbs.poll, verbs.print, verbs.target
local http = require("http")

local health = {}


local OK_WORDS = { ok = true, healthy = true, up = true, pass = true, passing = true, green = true }
local DEFAULT_TIMEOUT, DEFAULT_SLOW = 10, 5

local function num(v)
  if type(v) ~= "number" then return v end
  return math.tointeger(v) or v
end

local function ms(seconds)
  if seconds == nil then return "-" end
  if seconds < 1 then return string.format("%.0f ms", seconds * 1000) end
  return string.format("%.1f s", seconds)
end
health.ms = ms

-- The target the configuration comes from: opts.target, else the run's.
local function target_of(opts)
  return (opts and opts.target) or (type(target) == "table" and target) or {}
end

local function slow_after(opts)
  return (opts and opts.slow_after) or tonumber(target_of(opts).slow_after) or DEFAULT_SLOW
end

-- A check as a table, with its expectation as a list of statuses (nil:
-- any 2xx).
local function normalize(c, i)
  if type(c) == "string" then c = { url = c } end
  if type(c) ~= "table" or type(c.url) ~= "string" then
    error(string.format("health.check: check %d must be a URL or a table { url = ... }", i), 0)
  end
  local expect = c.expect
  if type(expect) == "number" then expect = { expect } end
  if c.cacert ~= nil and type(c.cacert) ~= "string" then
    error(string.format("health.check: check %d: cacert must be the path of a CA file", i), 0)
  end
  return { url = c.url, name = c.name or c.url, expect = expect, contains = c.contains, json = c.json,
    timeout = c.timeout, cacert = c.cacert }
end

-- The CA a check trusts when it names none: the target's tls.cacert, the
-- private CA its HTTPS services are signed by (docs/targets.md).
local function default_cacert(opts)
  local t = target_of(opts).tls
  if type(t) == "table" and type(t.cacert) == "string" then return t.cacert end
  return nil
end

local function expected_text(expect)
  if expect == nil then return "2xx" end
  local parts = {}
  for i, s in ipairs(expect) do parts[i] = tostring(s) end
  return table.concat(parts, " or ")
end

local function status_ok(status, expect)
  if expect == nil then return status >= 200 and status < 300 end
  for _, s in ipairs(expect) do if status == s then return true end end
  return false
end

-- What is wrong with one response, or nil.
local function judge(c, r)
  if not status_ok(r.status, c.expect) then
    return string.format("GET %s answered %d, expected %s", c.url, r.status, expected_text(c.expect))
  end
  if c.contains and not r.body:find(c.contains, 1, true) then
    return string.format("GET %s: the body does not contain %q", c.url, c.contains)
  end
  if c.json then
    local ok, doc = pcall(json.decode, r.body)
    if not ok or type(doc) ~= "table" then
      return string.format("GET %s: the body is not JSON", c.url)
    end
    for k, want in pairs(c.json) do
      if doc[k] ~= want then
        return string.format("GET %s: JSON field %s is %s, expected %s", c.url, k,
          tostring(num(doc[k])), tostring(want))
      end
    end
  end
  return nil
end

local function sample(c, timeout)
  local ok, r = pcall(http.get, c.url, { timeout = c.timeout or timeout, quiet = true,
    cacert = c.cacert })
  if not ok then
    -- (the primitive's message without the runbook position in front)
    local msg = errors.message(r)
    return { problem = msg }
  end
  return { status = r.status, time = r.time, body = r.body, problem = judge(c, r) }
end

-- One check's result from its samples (in the order they were taken).
local function sum_up(c, samples, opts)
  local res = { name = c.name, url = c.url, samples = #samples, failures = 0, times = {} }
  local limit = slow_after(opts)
  for _, s in ipairs(samples) do
    if s.time then
      res.times[#res.times + 1] = s.time
      if res.time == nil or s.time > res.time then res.time = s.time end
    end
    res.status = s.status or res.status
    res.body = s.body and s.body:sub(1, 200) or res.body
    if s.problem then
      res.failures = res.failures + 1
      res.problem = res.problem or s.problem
    end
  end
  res.ok = res.failures == 0
  res.intermittent = res.failures > 0 and res.failures < res.samples
  res.slow = res.time ~= nil and res.time > limit
  if res.slow and res.ok then
    res.problem = string.format("GET %s took %s (over %s s)", c.url, ms(res.time), tostring(limit))
  end
  return res
end

local function run_check(c, opts)
  local samples = {}
  for i = 1, opts.samples do samples[i] = sample(c, opts.timeout) end
  return sum_up(c, samples, opts)
end

local function show(res)
  local verdict = res.ok and (res.slow and "SLOW" or "ok") or (res.intermittent and "FLAKY" or "FAIL")
  local line = string.format("  %-5s %-4s %8s  %s", verdict, res.status and tostring(res.status) or "-",
    ms(res.time), res.url)
  if res.samples > 1 then line = line .. string.format("  (%d/%d failed)", res.failures, res.samples) end
  if res.problem and not res.ok then line = line .. "\n        " .. res.problem end
  print(line)
end

local function check_list(checks, opts)
  checks = checks or target_of(opts).health
  if checks == nil then
    errors.usage("health.check: no URLs given and the target has no health; add health = { " ..
      "\"https://app.example/health\" } to it in the config file (docs/targets.md)", "health")
  end
  if type(checks) == "string" then checks = { checks } end
  local list = {}
  for i, c in ipairs(checks) do
    list[i] = normalize(c, i)
    list[i].cacert = list[i].cacert or default_cacert(opts)
  end
  return list
end

local function check_opts(opts)
  return { timeout = opts.timeout or DEFAULT_TIMEOUT, samples = math.max(1, math.floor(opts.samples or 1)),
    slow_after = opts.slow_after, target = opts.target }
end

function health.check(checks, opts)
  opts = opts or {}
  local list = check_list(checks, opts)
  local o = check_opts(opts)
  local results = parallel(list, function(c) return run_check(c, o) end)
  if not opts.quiet then
    for _, res in ipairs(results) do show(res) end
  end
  return results
end

function health.summary(results)
  local s = { total = #results, ok = 0, failing = 0, slow = 0, intermittent = 0 }
  for _, r in ipairs(results) do
    if r.ok then s.ok = s.ok + 1 else s.failing = s.failing + 1 end
    if r.slow then s.slow = s.slow + 1 end
    if r.intermittent then s.intermittent = s.intermittent + 1 end
    if r.time and (s.slowest == nil or r.time > s.slowest.time) then s.slowest = r end
  end
  s.text = string.format("%d check%s: %d ok, %d failing, %d slow", s.total, s.total == 1 and "" or "s",
    s.ok, s.failing, s.slow)
  if s.intermittent > 0 then s.text = s.text .. string.format(" (%d intermittent)", s.intermittent) end
  if s.slowest then s.text = s.text .. string.format("; slowest %s (%s)", ms(s.slowest.time), s.slowest.url) end
  return s
end

function health.findings(results)
  local findings, failing = {}, {}
  for _, r in ipairs(results) do
    if not r.ok and not r.intermittent then failing[#failing + 1] = r end
  end
  if #results > 0 and #failing == #results then
    local problems = {}
    for i, r in ipairs(failing) do problems[i] = r.problem end
    findings[1] = { kind = "outage", source = "health",
      what = string.format("every health check fails (%d of %d): %s", #failing, #results,
        table.concat(problems, "; ")) }
    return findings
  end
  for _, r in ipairs(results) do
    if r.intermittent then
      findings[#findings + 1] = { kind = "intermittent", source = "health",
        what = string.format("%s failed %d of %d times: %s", r.url, r.failures, r.samples, r.problem) }
    elseif not r.ok then
      findings[#findings + 1] = { kind = "feature_down", source = "health", what = r.problem }
    elseif r.slow then
      findings[#findings + 1] = { kind = "slow", source = "health", what = r.problem }
    end
  end
  return findings
end

-- The names a pool's counts go by, first match wins: plain ones, and
-- those of HikariCP, node-postgres and SQLAlchemy as apps report them.
local POOL_KEYS = {
  size = { "size", "max", "max_size", "maxSize", "maximum", "maximumPoolSize", "limit", "capacity" },
  total = { "total", "totalCount", "totalConnections", "open", "connections" },
  in_use = { "in_use", "inUse", "active", "activeConnections", "used", "busy", "checked_out", "checkedOut" },
  idle = { "idle", "idleCount", "idleConnections", "available", "free" },
  waiting = { "waiting", "waitingCount", "pending", "queued", "threadsAwaitingConnection" },
}

local function first_number(t, names)
  for _, k in ipairs(names) do
    if type(t[k]) == "number" then return num(t[k]) end
  end
  return nil
end

local function is_pool(t)
  if type(t) ~= "table" then return false end
  for _, names in pairs(POOL_KEYS) do
    if first_number(t, names) ~= nil then return true end
  end
  return false
end

-- Depth-first search for a table named pool with a count in it.
local function find_pool(t, path, depth)
  if depth > 4 then return nil end
  local keys = {}
  for k in pairs(t) do if type(k) == "string" then keys[#keys + 1] = k end end
  table.sort(keys, function(a, b)
    -- db/database first, so an app pool elsewhere does not win by accident
    local pa, pb = (a == "db" or a == "database") and 0 or 1, (b == "db" or b == "database") and 0 or 1
    if pa ~= pb then return pa < pb end
    return a < b
  end)
  if is_pool(t.pool) then
    return t.pool, path == "" and "pool" or (path .. ".pool")
  end
  for _, k in ipairs(keys) do
    if type(t[k]) == "table" then
      local p, where = find_pool(t[k], path == "" and k or (path .. "." .. k), depth + 1)
      if p then return p, where end
    end
  end
  return nil
end

-- pool.size is the most connections the pool may open when the document
-- says (size, max, ...); with only the number open (node-postgres'
-- totalCount) it is that number and pool.size_is_open is true: all of
-- them busy is then no exhaustion, as the pool may open more.
function health.pool(doc)
  if type(doc) ~= "table" then return nil end
  local p, path = find_pool(doc, "", 0)
  if p == nil then return nil end
  local size, total = first_number(p, POOL_KEYS.size), first_number(p, POOL_KEYS.total)
  local in_use, idle = first_number(p, POOL_KEYS.in_use), first_number(p, POOL_KEYS.idle)
  local pool = { size = size or total, size_is_open = size == nil and total ~= nil or nil,
    waiting = first_number(p, POOL_KEYS.waiting) or 0, path = path }
  local open = total or pool.size
  if in_use == nil and idle ~= nil and open ~= nil then in_use = open - idle end
  pool.in_use = in_use or 0
  pool.idle = idle or (pool.size and pool.size - pool.in_use)
  if pool.size then pool.usage = pool.size > 0 and pool.in_use / pool.size or 0 end
  return pool
end

local function is_ok_word(v)
  return type(v) == "string" and OK_WORDS[v:lower()] == true
end

-- Words that say a dependency is down, not merely degraded.
local DOWN_WORDS = { down = true, error = true, failed = true, fail = true, failing = true, critical = true,
  unreachable = true, unavailable = true, dead = true, red = true, offline = true, unhealthy = true }

-- One entry of the detailed health as a component, or nil when it does
-- not say its state: { name, status, ok, down, error }.  The state is a
-- status word ({"status":"up"}) or a boolean ({"ok":false},
-- {"healthy":false}, {"up":false}); the error is what the entry says
-- went wrong (error, message, reason, details.error).
local function component(name, v)
  local ok, status
  if type(v.ok) == "boolean" then ok = v.ok
  elseif type(v.healthy) == "boolean" then ok = v.healthy
  elseif type(v.up) == "boolean" then ok = v.up end
  if type(v.status) == "string" or type(v.status) == "number" then
    status = tostring(v.status)
    if ok == nil then ok = is_ok_word(status) end
  elseif ok == nil then
    return nil
  end
  local details = type(v.details) == "table" and v.details or {}
  local err = v.error or v.message or v.reason or details.error or details.message
  if type(err) == "table" then err = err.message or json.encode(err) end
  local c = { name = name, ok = ok, status = status or (ok and "ok" or "down"),
    error = err ~= nil and tostring(err) or nil }
  c.down = not ok and (status == nil or DOWN_WORDS[status:lower()] == true)
  return c
end

-- The components: the top level's entries, and those of a components /
-- checks / dependencies / services table (Spring's actuator, .NET).
local function components_of(doc)
  local list = {}
  local function scan(t, prefix)
    local names = {}
    for k, v in pairs(t) do
      if type(k) == "string" and type(v) == "table" then names[#names + 1] = k end
    end
    table.sort(names)
    for _, k in ipairs(names) do
      local c = component(prefix .. k, t[k])
      if c then list[#list + 1] = c end
    end
  end
  scan(doc, "")
  for _, group in ipairs({ "components", "checks", "dependencies", "services" }) do
    if type(doc[group]) == "table" and component(group, doc[group]) == nil then scan(doc[group], "") end
  end
  return list
end

local function pool_problems(d, pool)
  local shown = pool.size and string.format("%d/%d in use, %d waiting", pool.in_use, pool.size, pool.waiting)
    or string.format("%d in use, %d waiting", pool.in_use, pool.waiting)
  local what
  if pool.waiting > 0 then
    what = string.format("%d request(s) waiting for a database connection (pool %s)", pool.waiting, shown)
  elseif pool.size and not pool.size_is_open and pool.in_use >= pool.size then
    what = string.format("the database pool is exhausted (%s)", shown)
  end
  if what then
    d.problems[#d.problems + 1] = what
    d.findings[#d.findings + 1] = { kind = "degraded", source = "db pool", what = what }
  end
end

local function read_detailed(d, doc)
  d.doc = doc
  if doc.status ~= nil and not is_ok_word(doc.status) then
    d.problems[#d.problems + 1] = string.format("the detailed health says status %s", tostring(doc.status))
  end
  for _, c in ipairs(components_of(doc)) do
    d.components[#d.components + 1] = c
    if not c.ok then
      local what = string.format("%s is %s in the detailed health%s", c.name, c.status,
        c.error and (": " .. c.error) or "")
      d.problems[#d.problems + 1] = what
      d.findings[#d.findings + 1] = { kind = "feature_down", source = "detailed health", what = what }
      if c.down then d.down[#d.down + 1] = c end
    end
  end
  local pool = health.pool(doc)
  d.pool = pool
  if pool then pool_problems(d, pool) end
end

function health.detailed(url, opts)
  opts = opts or {}
  url = url or target_of(opts).detailed_health
  if url == nil then
    errors.raise("usage", "health.detailed: no URL given and the target has no detailed_health; add " ..
      "detailed_health = \"https://app.example/health/detailed\" to it (docs/targets.md)", { primitive = "health" })
  end
  local d = { url = url, ok = false, problems = {}, findings = {}, components = {}, down = {} }
  local ok, r = pcall(http.get, url, { timeout = opts.timeout or DEFAULT_TIMEOUT, quiet = opts.quiet,
    cacert = opts.cacert or default_cacert(opts) })
  if not ok then
    local msg = errors.message(r)
    d.problems[1] = msg
    d.findings[1] = { kind = "feature_down", source = "detailed health", what = msg }
    return d
  end
  d.status, d.time = r.status, r.time
  local okj, doc = pcall(json.decode, r.body)
  if not okj or type(doc) ~= "table" then
    d.problems[1] = string.format("GET %s answered %d with a body that is not JSON: %q", url, r.status,
      r.body:sub(1, 80))
    d.findings[1] = { kind = "degraded", source = "detailed health", what = d.problems[1] }
    return d
  end
  read_detailed(d, doc)
  if r.status >= 300 and #d.findings == 0 then
    local what = string.format("GET %s answered %d", url, r.status)
    d.problems[#d.problems + 1] = what
    d.findings[#d.findings + 1] = { kind = "feature_down", source = "detailed health", what = what }
  end
  local limit = slow_after(opts)
  if d.time and d.time > limit then
    d.findings[#d.findings + 1] = { kind = "slow", source = "detailed health",
      what = string.format("GET %s took %s (over %s s)", url, ms(d.time), tostring(limit)) }
  end
  d.ok = #d.problems == 0
  return d
end

-- health.probe: every sample of every check and the detailed health at
-- once, so a hung app costs one timeout, not one per request.
function health.probe(checks, detailed_url, opts)
  opts = opts or {}
  local list = check_list(checks, opts)
  local o = check_opts(opts)
  local tasks = {}
  for ci = 1, #list do
    for _ = 1, o.samples do tasks[#tasks + 1] = { check = ci } end
  end
  if detailed_url then tasks[#tasks + 1] = { detailed = detailed_url } end
  local out = parallel(tasks, function(t)
    if t.detailed then
      return health.detailed(t.detailed, { timeout = o.timeout, slow_after = opts.slow_after,
        cacert = opts.cacert, quiet = true, target = opts.target })
    end
    return sample(list[t.check], o.timeout)
  end)
  local per = {}
  for i, t in ipairs(tasks) do
    if t.check then
      per[t.check] = per[t.check] or {}
      table.insert(per[t.check], out[i])
    end
  end
  local results = {}
  for ci, c in ipairs(list) do results[ci] = sum_up(c, per[ci] or {}, o) end
  if not opts.quiet then
    for _, res in ipairs(results) do show(res) end
  end
  return results, detailed_url and out[#out] or nil
end

local function state_text(s)
  if s.failing == 0 then return "already healthy: " .. s.text end
  if s.failing == s.total then return "still down: " .. s.text end
  return "still failing: " .. s.text
end

-- health.await: after a simulated action nothing changed, so a wait could
-- only run out its timeout; the real state is read once instead.
function health.await(checks, opts)
  opts = opts or {}
  local timeout, what = opts.timeout or 20, opts.what or "every health endpoint passing"
  local simulated = opts.simulated
  if simulated == nil then simulated = dry_run == true end
  local s
  local function once()
    s = health.summary(health.check(checks, { quiet = true, timeout = opts.request_timeout or 5,
      target = opts.target }))
    return s.failing == 0
  end
  if simulated then
    once()
    s.simulated = true
    log.info("would wait up to %s s for %s (the real state is %s)", tostring(timeout), what, state_text(s))
    return true, s
  end
  local ok, err = pcall(poll, once, { every = opts.every or 0.5, timeout = timeout, what = what })
  if not ok and require("runbook.loop").interrupts() > 0 then error(err, 0) end
  return ok, s
end

return health
