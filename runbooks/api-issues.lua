-- api-issues: the API is failing or slow.  Measure the health endpoints
-- (status against expectations, response times), read the detailed health
-- and its database pool, then offer the usual fixes, each behind its own
-- confirmation: restart the unhealthy instance, delete cache keys matching
-- a pattern (SCAN + DEL), or flush the Redis database (the operator types
-- the target's name first).  When the detailed health says a dependency
-- is down (Redis refusing connections, the database unreachable), the
-- runbook says which and proposes no restart: restarting the app does not
-- bring a dependency back.  The last step checks again and fails while the
-- health endpoints still fail or a dependency is still down, whatever fix
-- was chosen (none included).
--
--   runbook run api-issues --target prod
--   runbook run api-issues --target prod -p fix=delete-cache-keys -p pattern='cache:user:*'
--   runbook run api-issues --target prod --dry-run    (measures for real, changes nothing)
--
-- Target keys (docs/targets.md): health, detailed_health, slow_after,
-- services + manager (for the restart), redis (for the cache fixes).
local health = require("health")
local incident = require("incident")
local service = require("service")

runbook {
  name = "api-issues",
  title = "API errors or slowness: measure, then restart, clear cache keys or flush Redis",
  severity = "P1",
  description = "Health and detailed-health endpoints with expectations and response times, " ..
    "the database pool from the detailed health, then one fix chosen by the operator: restart " ..
    "an unhealthy instance, delete a cache key pattern, or FLUSHDB behind a typed confirmation.",
}

local FIXES = { "restart", "delete-cache-keys", "flush-redis", "none" }

param("fix", { help = "the fix to apply (asked when not given)", choices = FIXES })
param("service", { help = "the instance to restart (default: the target's first service)" })
param("pattern", { help = "cache keys to delete, Redis MATCH syntax like cache:user:* (asked when not given)" })
param("samples", { help = "requests per health endpoint (failing some of them = intermittent)", default = 3 })
param("slow_after", { help = "seconds over which a response counts as slow" })
param("timeout", { help = "seconds each health request may take (they all go out at once)", default = 10 })
param("settle", { help = "seconds to wait for the health endpoints after a restart", default = 20 })
param("max_keys", { help = "refuse to delete more keys than this in one go", default = 100000 })

-- What the steps share is in `state` (health, detailed, fix, simulated and
-- the findings): recorded at each step end, so a --resume'd run has what
-- the steps it skips measured.
local findings = incident.findings()

local function instance(p)
  return service.default(p.service, { needed_for = "restart" })
end

local function redis_conn()
  if target.redis == nil then
    error("the target has no redis; add redis = \"redis://host:6379/0\" to it (docs/targets.md)", 0)
  end
  return redis.connect(target.redis, { timeout = 30 })
end

-- The health samples and the detailed health go out at once (health.probe):
-- when the app hangs, every request times out together, and the fix is
-- offered one request timeout after the start instead of one per request.
step("Check the health endpoints: status and response times", { id = "health" }, function(p)
  findings:clear("health")      -- a retried step does not count twice
  local results, d = health.probe(nil, target.detailed_health, { samples = tonumber(p.samples) or 3,
    slow_after = tonumber(p.slow_after), timeout = tonumber(p.timeout) })
  state.health = health.summary(results)
  state.detailed = d
  log.info(state.health.text)
  findings:add_all(health.findings(results), "health")
end)

-- "redis (connect ECONNREFUSED ...), db" for the components that are down.
local function down_text(d)
  local parts = {}
  for i, c in ipairs(d and d.down or {}) do
    parts[i] = c.name .. (c.error and (" (" .. c.error .. ")") or "")
  end
  return table.concat(parts, ", ")
end

local function show_pool(d)
  local pool = d.pool
  if pool == nil then
    log.warn("the detailed health (GET %s answered %d) has no database pool (no table named pool with " ..
      "size, in_use, idle or waiting counts, like db.pool)", d.url, d.status)
  elseif pool.size then
    log.info("database pool (%s): %d/%d in use, %d waiting, %d idle (%.0f%% used)%s", pool.path,
      pool.in_use, pool.size, pool.waiting, pool.idle, pool.usage * 100,
      pool.size_is_open and "; the size is the connections open, the maximum is not given" or "")
  else
    log.info("database pool (%s): %d in use, %d waiting (its size is not given)", pool.path, pool.in_use,
      pool.waiting)
  end
end

step("Read the detailed health and the database pool", { id = "detailed" }, function()
  findings:clear("detailed")
  if target.detailed_health == nil then
    log.warn("no detailed health: add detailed_health = \"https://.../health/detailed\" to the target")
    return
  end
  local d = state.detailed
  if d == nil then
    error("the detailed health was not read: run from the first step (--start-at health)", 0)
  end
  if d.status == nil then
    -- no answer at all: a timeout or a refused connection, said as it was
    log.warn("no detailed health, so no database pool to read: %s", d.problems[1] or "no answer")
    findings:add_all(d.findings, "detailed")
    return
  end
  -- (a 503 comes with the document that says what is down: read it all)
  log.info("GET %s: %d in %s", d.url, d.status, health.ms(d.time))
  for _, c in ipairs(d.components) do
    print(string.format("    %-10s %s%s", c.name, c.status, c.error and (": " .. c.error) or ""))
  end
  show_pool(d)
  if #d.down > 0 then
    log.warn("down, says the detailed health: %s", down_text(d))
  end
  findings:add_all(d.findings, "detailed")
end)

-- The fix to propose.  A dependency the detailed health says is down is
-- not cured by restarting the app: propose none, and say what is down.
local function propose_fix(p)
  local d = state.detailed
  if d and #d.down > 0 then
    log.warn("not proposing a restart: %s %s down; restarting %s does not bring %s back: fix %s first",
      down_text(d), #d.down == 1 and "is" or "are", service.default(p.service) or "the app",
      #d.down == 1 and "it" or "them", #d.down == 1 and "it" or "them")
    return "none"
  end
  if (state.health and state.health.failing > 0) or (d and not d.ok) then return "restart" end
  return "none"
end

step("Choose a fix", { id = "fix" }, function(p)
  local proposed = propose_fix(p)
  if #findings:list() > 0 then
    local sev, why = findings:propose()
    log.info("this looks like %s (%s): %s", sev, incident.meaning(sev), table.concat(why, "; "))
  end
  print("Fixes:")
  print("  restart            restart the unhealthy instance through " .. (target.manager or "its manager"))
  print("  delete-cache-keys  delete the Redis keys matching a pattern (SCAN + DEL)")
  print("  flush-redis        FLUSHDB on " .. (target.redis or "(no redis in the target)") ..
    " after you type the target's name")
  print("  none               change nothing")
  log.info("proposed fix: %s", proposed)
  if p.fix then
    state.fix = p.fix
  else
    print(string.format("(Enter takes the proposed fix: %s)", proposed))
    state.fix = choose("Which fix?", FIXES, { default = proposed })
  end
  log.info("fix: %s%s", state.fix, p.fix and " (from -p fix)" or (state.fix ~= proposed and
    " (not the proposal)" or ""))
end)

-- The three fix steps run only when chosen, and each asks its own
-- question right before the change (confirm, or the typed name for the
-- flush) instead of being marked dangerous=true: the engine would ask that
-- one before every fix step, the ones not chosen included.
step("Restart the unhealthy instance", { id = "restart" }, function(p)
  if state.fix ~= "restart" then
    log.info("not chosen (fix: %s)", tostring(state.fix))
    return
  end
  local name = instance(p)
  local st = service.status(name)
  log.info("%s (%s, %s): %s", name, st.manager, st.where, st.state)
  confirm("Restart the unhealthy instance now?")
  local r = service.restart(name)
  state.simulated = r.dry_run
  local settle = tonumber(p.settle) or 20
  local what = "every health endpoint of " .. name .. " passing"
  local ok, s = health.await(nil, { timeout = settle, simulated = r.dry_run, what = what })
  if r.dry_run then return end
  if not ok then
    error(string.format("%s restarted, but not %s after %s s: %s", name, what, tostring(settle),
      s and s.text or "no answer"), 0)
  end
  log.info("%s restarted and healthy", name)
end)

-- SCAN the keyspace for pattern; returns the matching keys (each once).
local function scan(r, pattern, limit)
  local keys, seen, cursor = {}, {}, "0"
  for _ = 1, 1000000 do
    local reply = r:call("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
    cursor = reply[1]
    for _, k in ipairs(reply[2]) do
      if not seen[k] then
        seen[k] = true
        keys[#keys + 1] = k
      end
    end
    if #keys > limit then
      error(string.format("more than %d keys match %s; narrow the pattern or pass -p max_keys=N", limit,
        pattern), 0)
    end
    if cursor == "0" then return keys end
  end
  error("SCAN did not finish after 1000000 rounds", 0)
end

step("Delete the cache keys matching a pattern", { id = "cache" }, function(p)
  if state.fix ~= "delete-cache-keys" then
    log.info("not chosen (fix: %s)", tostring(state.fix))
    return
  end
  local r = redis_conn()
  local pattern = p.pattern or prompt("Cache key pattern to delete (Redis MATCH syntax)?")
  if pattern:match("^%**$") then
    error(string.format("pattern %q matches every key: that is flush-redis, which asks for the target's name", pattern), 0)
  end
  local keys = scan(r, pattern, tonumber(p.max_keys) or 100000)
  log.info("%d key(s) match %s on %s", #keys, pattern, target.redis)
  for i = 1, math.min(5, #keys) do print("    " .. keys[i]) end
  if #keys > 5 then print(string.format("    ... and %d more", #keys - 5)) end
  if #keys == 0 then
    log.info("nothing to delete")
    return
  end
  confirm("Delete the keys matching the pattern?")
  local deleted, batch = 0, {}
  for i, k in ipairs(keys) do
    batch[#batch + 1] = k
    if #batch == 500 or i == #keys then
      deleted = deleted + r:call("DEL", table.unpack(batch))
      batch = {}
    end
  end
  local left = #scan(r, pattern, tonumber(p.max_keys) or 100000)
  log.info("DEL removed %d of %d key(s); %d still match %s", deleted, #keys, left, pattern)
end)

step("Flush the Redis database (type the target's name)", { id = "flush" }, function()
  if state.fix ~= "flush-redis" then
    log.info("not chosen (fix: %s)", tostring(state.fix))
    return
  end
  if target.name == nil then
    error("flush-redis needs --target: you confirm it by typing the target's name", 0)
  end
  local r = redis_conn()
  local size = r:call("DBSIZE")
  log.warn("FLUSHDB deletes all %d key(s) of %s (target %s); there is no undo", size, target.redis, target.name)
  local typed = prompt("Type the target's name to flush its Redis database")
  if typed ~= target.name then
    error(string.format("flush refused: you typed %q, the target is %q; nothing was flushed", typed,
      target.name), 0)
  end
  -- No undo: a second person approves it too (the config's room, else
  -- attested by the operator).
  approve("Approve flushing the target's Redis database (FLUSHDB, no undo)?", { from = "other" })
  r:call("FLUSHDB")
  log.info("FLUSHDB done; %d key(s) left", r:call("DBSIZE"))
end)

-- The run ends done only when the health endpoints pass and the detailed
-- health names no dependency down, whatever the fix was (none included):
-- "done" with the API still failing would read as resolved.
step("Check the health endpoints again", { id = "verify" }, function(p)
  local results, d = health.probe(nil, target.detailed_health, { samples = 1, timeout = tonumber(p.timeout) })
  local s = health.summary(results)
  local down = down_text(d)
  local failing = s.failing > 0 or down ~= ""
  local text = s.text .. (down ~= "" and ("; down, says the detailed health: " .. down) or "")
  if state.simulated then
    log.info("dry run: the %s was simulated; would expect every check to pass (the real state is %s)",
      tostring(state.fix), not failing and ("healthy: " .. text)
        or ((s.failing == s.total and "still down: " or "still failing: ") .. text))
    return
  end
  log.info("after the fix (%s): %s", tostring(state.fix), text)
  if failing and state.fix == "none" then
    error(string.format("still failing, and no fix was applied (fix: none): %s", text), 0)
  elseif failing then
    error(string.format("still failing after %s: %s", state.fix, text), 0)
  end
end)
