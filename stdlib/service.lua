-- service: status, logs, restart, start and stop of a target's services,
-- through the service manager the target names (docs/targets.md).
--
--   local service = require("service")
--
-- Managers (target.manager):
--   systemd   systemctl status|restart|start|stop NAME;
--             logs: journalctl -u NAME -n 200 -p err --no-pager
--   compose   docker compose -f <compose_file> restart|start|stop NAME;
--             status: docker compose -f FILE ps --all --format json NAME
--             (running = State "running" and not Health "unhealthy");
--             logs: docker compose -f FILE logs --no-color --tail 200 NAME
--   pm2       <pm2_bin> ls -m (status) | restart|start|stop NAME --no-color;
--             logs: <pm2_bin> logs NAME --lines 200 --nostream --no-color [--err];
--             PM2_HOME = target.pm2_home when set.  Any pm2 command starts a
--             daemon when none runs, so every call first looks for the daemon
--             (PM2_HOME's pm2.pid alive, rpc.sock present): status then says
--             "pm2 daemon not running" and logs raises, starting none; a
--             restart or start of an app the daemon does not know (after
--             `pm2 kill`, a reboot) runs `pm2 start <pm2_ecosystem> --only
--             NAME` instead.  A crash loop is not "online": with restarts
--             climbing while the uptime stays under a few seconds, status
--             says "crash loop: ..." with the counts (running = false).
--   supervisor <supervisorctl_bin> -c <supervisor_conf> status|start|stop|restart NAME;
--             running = state RUNNING (supervisorctl exits 0 for BACKOFF and
--             STARTING too); logs: supervisorctl -c CONF tail -BYTES NAME
--             stderr (stdout with errors = false), cut to the last lines
--   commands  the argv lists of target.commands, "%s" replaced by the
--             service: start, stop, restart, status (exit 0 = running), logs
-- With target.ssh set ({ host=, port=, user=, key=, known_hosts= }, the
-- options of ssh.connect) every command runs there, on one session kept
-- for the run; otherwise it runs here with exec.
--
-- status and logs are read-only (readonly = true: they run in a dry run
-- too, so a rehearsal sees the real state); restart, start and stop change
-- the world, so a dry run shows them as "would run".
--
-- service.status(name, opts) -> st
--   st = { service, manager, where, running = bool, state = "active (running)" |
--   "online" | "RUNNING (pid 12, uptime 0:01:02)" | "not running" | "crash loop: ..." |
--   "pm2 daemon not running (...)" | ..., code, output, pid (pm2, supervisor),
--   restarts, uptime (seconds), crash_loop (pm2, supervisor: BACKOFF/FATAL) }.
--   Output is the command's, escapes removed; for pm2 the state (pm2 ls is
--   never shown: it lists every process).
--   A non-zero exit is "not running", not an error; a command that cannot
--   run at all (systemctl missing, ssh refused) raises.  opts: timeout
--   (30 s), quiet (do not echo the command's output).
--     local st = service.status("api")
--     if not st.running then log.warn("%s is %s", st.service, st.state) end
--
-- service.logs(name, opts) -> lg
--   The last opts.lines (200) lines, and with opts.errors (default true) only
--   errors where the manager can filter (journalctl -p err, pm2 --err).
--   lg = { service, text, lines = {...}, errors = {...}, filtered = bool };
--   lg.errors is every line when the manager filtered, else the lines that
--   look like errors (error, fatal, panic, exception, traceback, critical,
--   failed).  commands: the logs argv decides how many lines.  The output is
--   not echoed (it is in the transcript) unless opts.quiet == false; a
--   non-zero exit raises.
--     local lg = service.logs("api", { lines = 200 })
--     log.info("%d error lines", #lg.errors)
--   opts.since = N keeps the lines of the last N seconds.  journalctl and
--   docker compose select them (--since; lg.window_by = "manager").  pm2,
--   supervisorctl tail and commands have no time filter: a line whose
--   start carries a date and time (2026-12-01T09:01:02[.123][Z|+01:00],
--   or with a space for the T; without a zone it is local time) older
--   than N s is left out (lg.window_by = "timestamps"); a line with none
--   is kept, as its age is unknown.  Then lg.older counts the error lines
--   left out and lg.older_newest_age is the age of the newest of them,
--   lg.newest_error_age the age (s) of the newest error kept when its
--   line says, lg.untimed the error lines kept with no time.
--     local lg = service.logs("api", { since = 600 })
--
-- service.restart(name, opts) / service.start / service.stop -> r
--   r = { service, manager, action, ok, code, output, reason (the last line
--   of stderr, else stdout: usually why it failed), dry_run, note (pm2: why
--   it started the app from the ecosystem file), retryable (false when
--   trying again cannot help: no daemon and no pm2_ecosystem) }.  A failure
--   raises "service api: restart through systemd (deploy@app1:22) exited
--   with code 1: <reason>" unless opts.check == false (then r.ok is false).
--   opts.timeout: seconds (default 120).
--     local r = service.restart("api", { check = false })
--
-- service.down(name, opts) / service.up(name, opts) -> r
--   Takes the service out of use, or puts it back: maintenance mode when
--   the target names commands.maintenance_on and commands.maintenance_off
--   (argv lists, "%s" = the service; run like every other command, over
--   ssh when the target says so, 300 s each), else service.stop and
--   service.start.  r is what stop/start return, plus how = "maintenance"
--   | "stop", and said = what was done, or in a dry run what would have
--   been ("api stopped", "dry run: would turn maintenance mode on for
--   api"), which is also logged; a simulated action is never said done.
--   r.left is what a real down leaves ("api is stopped", "api is in
--   maintenance mode"), nil after an up or a simulation.
--     local r = service.down("api")      -- ... the work ...;  service.up("api")
--
-- service.maintenance(name, fn, opts) -> fn's results
--   service.down, fn(), service.up; the service is put back also when fn
--   raises, and the error is raised again.  For work that spans steps
--   (stop, restore, start, each retried on its own), call down and up in
--   their steps.
--     service.maintenance("api", function() exec { "/srv/bin/migrate" } end)
--
-- service.default(given, opts) -> name | nil
--   The service a runbook acts on: given (a -p service value), else the
--   target's first service, else nil; with opts.needed_for ("restart") a
--   missing one raises "no service to restart: pass -p service=NAME or add
--   services = { "api" } to the target".
--     local name = service.default(p.service, { needed_for = "restart" })
--
-- service.list() -> target.services, or {} when the target names none.
-- service.manager() -> the manager's name, checked against the target;
--   raises naming the key to add when the target lacks one.
-- service.where() -> "here" or the ssh target ("deploy@app1:22").
--
-- Every function takes opts.target to act on another target's table
-- instead of the run's `target` (the form of every stdlib module:
-- docs/authoring.md, "The stdlib modules").
local errors = require("runbook.errors")
local verbs = require("runbook.verbs")
local exec, json, log, target = verbs.exec, verbs.json, verbs.log, verbs.target
local ssh = require("ssh")

local service = {}

local loop = require("runbook.loop")

local DEFAULT_LINES, READ_TIMEOUT, CHANGE_TIMEOUT = 200, 30, 120
local ERROR_WORDS = { "error", "fatal", "panic", "exception", "traceback", "critical", "failed" }
-- pm2: a process up for less than CRASH_UPTIME seconds whose restart count
-- grows within CRASH_PAUSE seconds is crash-looping.
local CRASH_UPTIME, CRASH_PAUSE = 5, 1.5

local function target_of(opts)
  return (opts and opts.target) or target or {}
end

local function target_label(t)
  return t.name and ("targets." .. t.name) or "the target"
end

local function missing(t, key, example)
  error(string.format("service: %s has no %s; add %s to it in the config file (docs/targets.md)",
    target_label(t), key, example), 0)
end

-- An optional string key: its value, or default when it is not set.
local function string_key(t, key, default, example)
  local v = t[key]
  if v == nil then return default end
  if type(v) ~= "string" or v == "" then
    error(string.format("service: %s: %s must be a non-empty string, like %s (docs/targets.md)",
      target_label(t), key, example), 0)
  end
  return v
end

-- Replace every "%s" in an argument by the service name (plain text: a
-- name with "%" in it is not a pattern).
local function fill(arg, name)
  arg = tostring(arg)
  local out, i = {}, 1
  while true do
    local a, b = arg:find("%s", i, true)
    if not a then break end
    out[#out + 1] = arg:sub(i, a - 1) .. name
    i = b + 1
  end
  out[#out + 1] = arg:sub(i)
  return table.concat(out)
end

local function append(list, ...)
  for _, a in ipairs({ ... }) do list[#list + 1] = a end
  return list
end

local function commands_argv(t, action, name)
  local cmds = t.commands
  if type(cmds) ~= "table" then
    missing(t, "commands", 'commands = { ' .. action .. ' = { "/srv/bin/ctl", "' .. action .. '", "%s" } }')
  end
  local spec = cmds[action]
  if type(spec) ~= "table" or #spec == 0 then
    missing(t, "commands." .. action, 'commands.' .. action .. ' = { "/srv/bin/ctl", "' .. action .. '", "%s" }')
  end
  local argv = {}
  for i, a in ipairs(spec) do argv[i] = fill(a, name) end
  return argv
end

local function compose_file(t)
  if type(t.compose_file) ~= "string" or t.compose_file == "" then
    missing(t, "compose_file", 'compose_file = "/srv/app/docker-compose.yml"')
  end
  return t.compose_file
end

-- One ssh session per target table for the run (this module is loaded
-- once per run).
local sessions = setmetatable({}, { __mode = "k" })

local function session_for(t)
  local s = sessions[t]
  if s == nil then
    if type(t.ssh) ~= "table" then
      error(string.format("service: %s: ssh must be a table like { host = \"app1\", user = \"deploy\" }",
        target_label(t)), 0)
    end
    s = ssh.connect(t.ssh)
    sessions[t] = s
  end
  return s
end

-- Run argv here or over ssh; never raises on a non-zero exit.  env (a
-- table of variables, or nil) is exec's env here and an `env K=V` prefix
-- over ssh.
local function run_argv(t, argv, readonly, timeout, quiet, env)
  if t.ssh ~= nil then
    if env then
      local names, pre = {}, { "env" }
      for k in pairs(env) do names[#names + 1] = k end
      table.sort(names)
      for _, k in ipairs(names) do pre[#pre + 1] = k .. "=" .. env[k] end
      argv = append(pre, table.unpack(argv))
    end
    local r = session_for(t):exec(argv, { readonly = readonly, check = false, timeout = timeout,
      quiet = quiet })
    return r
  end
  local spec = { readonly = readonly, check = false, timeout = timeout, quiet = quiet, env = env }
  for i, a in ipairs(argv) do spec[i] = a end
  local ok, r = pcall(exec, spec)
  if not ok and tostring(r):find("cannot run", 1, true) then
    -- said in the target's words: this reaches the operator and notify
    local key = ({ pm2 = "pm2_bin", supervisor = "supervisorctl_bin" })[t.manager]
    error(string.format("service: cannot run %s for manager %q here (not installed, or not on PATH): %s",
      tostring(argv[1]), tostring(t.manager),
      key and ("give its full path as " .. key .. " in the target") or "give its full path in the target"), 0)
  end
  if not ok then error(r, 0) end
  return r
end

-- The line that says why: the last non-blank line of stderr, else of
-- stdout, at most 200 bytes.
local function last_line(r)
  for _, text in ipairs({ r.stderr or "", r.stdout or "" }) do
    local last
    for line in text:gmatch("[^\n]+") do
      if line:match("%S") then last = line end
    end
    if last then
      last = last:gsub("^%s+", ""):gsub("%s+$", "")
      return #last > 200 and (last:sub(1, 197) .. "...") or last
    end
  end
  return ""
end

local function output_of(r)
  local out = (r.stdout or "") .. (r.stderr ~= "" and r.stderr ~= nil and ("\n" .. r.stderr) or "")
  return (out:gsub("^%s+", ""):gsub("%s+$", ""))
end

-- Each manager: argv(t, action, name, opts) for status, logs and the
-- changes, and read_status(st, r, name) to judge the status output; or
-- its own status(t, name, opts, st), change(t, action, name, opts) and
-- before_logs(t, name, opts) where one command is not enough.
local MANAGERS = {}

MANAGERS.systemd = {
  argv = function(_, action, name, opts)
    if action == "logs" then
      local argv = { "journalctl", "-u", name, "-n", tostring(opts.lines), "--no-pager" }
      if opts.errors then argv[#argv + 1] = "-p"; argv[#argv + 1] = "err" end
      if opts.since then append(argv, "--since", string.format("-%ds", opts.since)) end
      return argv, opts.errors, false, opts.since ~= nil
    elseif action == "status" then
      return { "systemctl", "status", "--no-pager", "--lines=0", name }
    end
    return { "systemctl", action, name }
  end,
  -- exit 0 running; 3 stopped or failed; 4 no such unit
  read_status = function(st, r)
    st.running = r.code == 0
    local active = r.stdout:match("Active:%s*([^\n]-)%s+since") or r.stdout:match("Active:%s*([^\n]+)")
    st.state = active or (r.code == 4 and "no such unit" or (st.running and "running" or "not running"))
  end,
}

MANAGERS.compose = {
  argv = function(t, action, name, opts)
    local base = { "docker", "compose", "-f", compose_file(t) }
    if action == "logs" then
      append(base, "logs", "--no-color", "--tail", tostring(opts.lines))
      if opts.since then append(base, "--since", string.format("%ds", opts.since)) end
      return append(base, name), false, false, opts.since ~= nil
    elseif action == "status" then
      return append(base, "ps", "--all", "--format", "json", name)
    end
    return append(base, action, name)
  end,
  -- `ps --format json` prints a JSON array (Compose < 2.21) or one object
  -- a line (later versions).
  read_status = function(st, r, name)
    local rows = {}
    local text = r.stdout:gsub("^%s+", "")
    if text:sub(1, 1) == "[" then
      local ok, list = pcall(json.decode, text)
      if ok and type(list) == "table" then rows = list end
    else
      for line in text:gmatch("[^\n]+") do
        local ok, row = pcall(json.decode, line)
        if ok and type(row) == "table" then rows[#rows + 1] = row end
      end
    end
    st.running, st.state = false, r.code == 0 and "no container" or "unknown"
    for _, row in ipairs(rows) do
      if row.Service == name or row.Name == name or #rows == 1 then
        st.state = tostring(row.State or row.Status or "unknown")
        st.running = row.State == "running"
        st.health = row.Health ~= "" and row.Health or nil
        if st.health == "unhealthy" then st.running = false end
      end
    end
  end,
}

-- pm2 ------------------------------------------------------------------

local function pm2_bin(t) return string_key(t, "pm2_bin", "pm2", '"/usr/local/bin/pm2"') end

local function pm2_env(t)
  local home = string_key(t, "pm2_home", nil, '"/home/deploy/.pm2"')
  return home and { PM2_HOME = home } or nil
end

-- Is the daemon of PM2_HOME (else ~/.pm2) up?  Asked of its files, never
-- of pm2, which starts a daemon when none runs (`pm2 kill` and `pm2
-- --version` included).  A daemon killed by a signal leaves rpc.sock
-- behind, so the pid in pm2.pid decides.
local PM2_DAEMON_CHECK = [[
h="${PM2_HOME:-$HOME/.pm2}"
pid=$(cat "$h/pm2.pid" 2>/dev/null)
if [ -z "$pid" ]; then echo "no $h/pm2.pid"; exit 1; fi
if ! kill -0 "$pid" 2>/dev/null && [ ! -d "/proc/$pid" ]; then
  echo "$h/pm2.pid names pid $pid, which is not running"; exit 1
fi
if [ ! -S "$h/rpc.sock" ]; then echo "no $h/rpc.sock"; exit 1; fi
echo "pm2 daemon running (pid $pid, PM2_HOME $h)"]]

local function pm2_daemon(t, timeout)
  local r = run_argv(t, { "/bin/sh", "-c", PM2_DAEMON_CHECK, "pm2-daemon-check" }, true,
    timeout or READ_TIMEOUT, true, pm2_env(t))
  return r.code == 0, last_line(r), r
end

-- `pm2 ls -m` (pm2's minimal list), not `pm2 jlist`: jlist prints every
-- process's whole environment, secrets included (and a daemon started by
-- a runbook inherits the runbook's), and exec records what it prints.  The
-- minimal list has what status needs: per process a "+--- NAME" line, then
-- "pid : N", "status : online", "restarted : N" (pm2_env.restart_time) and
-- "uptime : 5s" (since pm_uptime, counted by pm2 on its own host; "0" when
-- not online).  pm2 may print warnings before the list.
local UPTIME_UNITS = { s = 1, m = 60, h = 3600, D = 86400, M = 2592000, Y = 31536000 }

local function pm2_list(t, timeout)
  local r = run_argv(t, { pm2_bin(t), "ls", "-m", "--no-color" }, true, timeout or READ_TIMEOUT, true,
    pm2_env(t))
  if r.code ~= 0 then return nil, r end
  local list, cur = {}, nil
  for line in (r.stdout or ""):gmatch("[^\n]+") do
    local name = line:match("^%+%-%-%- (.-)%s*$")
    if name then
      cur = { name = name }
      list[#list + 1] = cur
    elseif cur then
      local k, v = line:match("^(%a[%a ]-)%s*:%s*(.-)%s*$")
      if k then cur[k] = v end
    end
  end
  return list, r
end

-- What the list says of one process: status, restarts, pid and uptime in
-- seconds (nil when pm2 gave none).
local function pm2_facts(list, name)
  for _, proc in ipairs(list) do
    if proc.name == name then
      local f = { status = proc.status or "unknown", restarts = math.tointeger(tonumber(proc.restarted)) or 0,
        pid = math.tointeger(tonumber(proc.pid)) }
      if f.pid == 0 then f.pid = nil end
      local n, unit = (proc.uptime or ""):match("^(%d+)(%a)$")
      if n and UPTIME_UNITS[unit] then f.uptime = tonumber(n) * UPTIME_UNITS[unit] end
      return f
    end
  end
end

-- pm2 calls a crash-looping process "online" between its crashes: restarts
-- that grew while we looked, with the uptime still short, say otherwise.
local function pm2_judge(st, f, grew, window)
  st.restarts, st.uptime, st.pid = f.restarts, f.uptime, f.pid
  st.running, st.crash_loop = false, false
  if grew > 0 then
    st.crash_loop = true
    st.state = string.format("crash loop: %d restarts, %d of them in %.1f s; up %d s (pm2 says %s)",
      f.restarts, grew, window, f.uptime or 0, f.status)
  elseif f.status == "errored" and f.restarts > 0 then
    st.crash_loop = true
    st.state = string.format("errored after %d restarts: a crash loop pm2 stopped restarting", f.restarts)
  else
    st.running = f.status == "online"
    st.state = f.status
  end
end

local function pm2_status(t, name, opts, st)
  local timeout = opts.timeout or READ_TIMEOUT
  local up, why, r = pm2_daemon(t, timeout)
  st.code, st.dry_run, st.daemon, st.running = r.code, r.dry_run, up, false
  if not up then
    st.state, st.output = "pm2 daemon not running (" .. why .. ")", why
    return
  end
  local list, lr = pm2_list(t, timeout)
  st.code = lr.code
  local f = list and pm2_facts(list, name)
  if f == nil then
    st.state = list and "not in pm2's list" or ("unknown (pm2 ls exited with code " .. tostring(lr.code)
      .. ")")
    st.output = last_line(lr)
    return
  end
  local grew, window = 0, 0
  -- (pm2 gives no uptime while a process is not online: between two
  -- crashes it may be "stopped" or "launching" for a moment)
  if f.restarts > 0 and (f.uptime or 0) < CRASH_UPTIME and f.status ~= "errored" then
    local t0 = loop.now()
    loop.sleep(CRASH_PAUSE)
    local again = pm2_list(t, timeout)
    local f2 = again and pm2_facts(again, name)
    if f2 then grew, f, window = f2.restarts - f.restarts, f2, loop.now() - t0 end
  end
  pm2_judge(st, f, grew, window)
  st.output = st.state
end

-- restart and start of an app the daemon does not know (it was killed, the
-- host rebooted without `pm2 resurrect`) cannot work; start it from the
-- ecosystem file instead.  stop with no daemon has nothing to stop.
local function pm2_change(t, action, name, o)
  local bin, env = pm2_bin(t), pm2_env(t)
  local up, why = pm2_daemon(t)
  if action == "stop" and not up then
    return { code = 0, stdout = string.format("pm2 daemon not running (%s): %s is not running", why, name),
      stderr = "", ran = false }
  end
  local list = up and pm2_list(t) or nil
  if action == "stop" or (list and pm2_facts(list, name)) then
    return run_argv(t, { bin, action, name, "--no-color" }, false, o.timeout, o.quiet, env)
  end
  local reason = not up and ("pm2 daemon not running (" .. why .. ")")
    or (list and (name .. " is not in pm2's list") or "pm2 ls failed")
  local eco = string_key(t, "pm2_ecosystem", nil, '"/srv/app/ecosystem.config.js"')
  if eco == nil then
    return { code = 1, stdout = "", ran = false, retryable = false,
      stderr = reason .. '; add pm2_ecosystem = "/srv/app/ecosystem.config.js" to the target to start '
        .. name .. " from it (docs/targets.md)" }
  end
  local r = run_argv(t, { bin, "start", eco, "--only", name, "--no-color" }, false, o.timeout, o.quiet, env)
  r.note = string.format("%s: %s %s from %s", reason, r.dry_run and "would start" or "started", name, eco)
  return r
end

MANAGERS.pm2 = {
  env = pm2_env,
  argv = function(t, _, name, opts)         -- logs; status and the changes are below
    local argv = { pm2_bin(t), "logs", name, "--lines", tostring(opts.lines), "--nostream", "--no-color" }
    if opts.errors then argv[#argv + 1] = "--err" end
    return argv, opts.errors
  end,
  status = pm2_status,
  change = pm2_change,
  before_logs = function(t)
    local up, why = pm2_daemon(t)
    if not up then return "pm2 daemon not running (" .. why .. "); not starting one to read logs" end
  end,
}

-- supervisor -------------------------------------------------------------

local function supervisorctl(t)
  local conf = t.supervisor_conf
  if type(conf) ~= "string" or conf == "" then
    missing(t, "supervisor_conf", 'supervisor_conf = "/etc/supervisor/supervisord.conf"')
  end
  return { string_key(t, "supervisorctl_bin", "supervisorctl", '"/usr/bin/supervisorctl"'), "-c", conf }
end

-- supervisorctl tail counts bytes, not lines: read enough bytes for the
-- lines asked, and keep the last of them.
local SUPERVISOR_LINE_BYTES = 256

MANAGERS.supervisor = {
  argv = function(t, action, name, opts)
    if action == "logs" then
      local bytes = math.max(16384, opts.lines * SUPERVISOR_LINE_BYTES)
      return append(supervisorctl(t), "tail", "-" .. bytes, name, opts.errors and "stderr" or "stdout"),
        opts.errors, true
    end
    return append(supervisorctl(t), action, name)
  end,
  -- "api   RUNNING   pid 812, uptime 0:01:02"; a program in a group is
  -- "group:api".  The exit code says little (0 for BACKOFF too), so the
  -- state word decides.
  read_status = function(st, r, name, t)
    local out = r.stdout or ""
    for line in out:gmatch("[^\n]+") do
      local prog, word, rest = line:match("^(%S+)%s+(%u+)%s*(.-)%s*$")
      if prog and (prog == name or prog:sub(-#name - 1) == ":" .. name) then
        st.running = word == "RUNNING"
        st.crash_loop = word == "BACKOFF" or word == "FATAL"
        st.state = word .. (rest ~= "" and (" (" .. rest .. ")") or "")
          .. (st.crash_loop and ": a crash loop" or "")
        st.pid = tonumber(rest:match("pid (%d+)"))
        return
      end
    end
    st.running = false
    local why = last_line(r)
    if why:find("no such process", 1, true) then
      st.state = "no such program in " .. t.supervisor_conf .. " (" .. why .. ")"
    else
      st.state = "unknown: supervisorctl exited with code " .. tostring(r.code) .. (why ~= "" and (": " .. why) or "")
        .. " (is supervisord running?)"
    end
  end,
}

MANAGERS.commands = {
  argv = function(t, action, name)
    return commands_argv(t, action, name)
  end,
  read_status = function(st, r)
    st.running = r.code == 0
    local first = r.stdout:match("^%s*([^\n]*%S)")
    st.state = first or (st.running and "running" or ("not running (exit " .. r.code .. ")"))
  end,
}

local MANAGER_NAMES = { "systemd", "compose", "pm2", "supervisor", "commands" }

function service.manager(opts)
  local t = target_of(opts)
  local m = t.manager
  if m == nil then
    missing(t, "manager", 'manager = "systemd" (or "compose", "pm2", "supervisor", "commands")')
  end
  if MANAGERS[m] == nil then
    error(string.format("service: %s has manager = %q; use one of %s", target_label(t), tostring(m),
      table.concat(MANAGER_NAMES, ", ")), 0)
  end
  return m
end

function service.list(opts)
  local t = target_of(opts)
  if type(t.services) == "table" then return t.services end
  return {}
end

function service.where(opts)
  local t = target_of(opts)
  if t.ssh == nil then return "here" end
  local s = sessions[t]
  if s then return s.target end
  local h = type(t.ssh) == "table" and t.ssh or {}
  return string.format("%s%s", h.user and (h.user .. "@") or "", tostring(h.host))
end

local function check_name(fn, name)
  if type(name) ~= "string" or name == "" then
    errors.raise("usage", string.format("service.%s: expected a service name, got %s", fn, type(name)), { primitive = "service" })
  end
end

function service.status(name, opts)
  check_name("status", name)
  opts = opts or {}
  local t = target_of(opts)
  local m = service.manager(opts)
  local st = { service = name, manager = m }
  if MANAGERS[m].status then
    MANAGERS[m].status(t, name, opts, st)
  else
    local argv = MANAGERS[m].argv(t, "status", name, opts)
    local r = run_argv(t, argv, true, opts.timeout or READ_TIMEOUT, opts.quiet)
    st.code, st.output, st.dry_run = r.code, output_of(r), r.dry_run
    MANAGERS[m].read_status(st, r, name, t)
  end
  st.where = service.where(opts)        -- (after the command: an ssh session names its port)
  return st
end

local function looks_like_error(line)
  local l = line:lower()
  for _, w in ipairs(ERROR_WORDS) do
    if l:find(w, 1, true) then return true end
  end
  return false
end

-- The managers' own lines around the log: journalctl's "-- No entries --"
-- and "-- Logs begin at ...", pm2's "[TAILING] ..." and "FILE last 200
-- lines:", supervisorctl's "==> ... <==".  (line has no escapes left.)
local function is_note(line)
  return line:match("^%-%- .* %-%-$") ~= nil or line:match("^%-%- Logs begin") ~= nil
    or line:match("^%s*%[TAILING%]") ~= nil or line:match("last %d+ lines:%s*$") ~= nil
end

-- Days since 1970-01-01 of a civil date (proleptic Gregorian): a zoned
-- timestamp is converted without os.time, which reads the local zone.
local function days_from_civil(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local doy = (153 * (m + (m > 2 and -3 or 9)) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

-- The time (epoch seconds) a log line starts with, or nil: a date and
-- time in its first 80 bytes (after a manager's "0|api | " or a
-- container's "api-1  | " prefix), with an optional fraction and zone.
local STAMP = "(%d%d%d%d)%-(%d%d)%-(%d%d)[T ](%d%d):(%d%d):(%d%d)[%.,]?%d*()"
local function line_time(line)
  local y, mo, d, h, mi, sec, after = line:sub(1, 80):match(STAMP)
  if y == nil then return nil end
  y, mo, d, h, mi, sec = tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi), tonumber(sec)
  if mo < 1 or mo > 12 or d < 1 or d > 31 or h > 23 or mi > 59 or sec > 60 then return nil end
  local rest = line:sub(after, after + 6)
  local utc = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec
  if rest:match("^Z") or rest:match("^ UTC") then return utc end
  local sign, oh, om = rest:match("^([+-])(%d%d):?(%d%d)")
  if sign then
    local off = (tonumber(oh) * 60 + tonumber(om)) * 60
    return sign == "+" and utc - off or utc + off
  end
  return os.time({ year = y, month = mo, day = d, hour = h, min = mi, sec = sec })
end

-- Leave out the error lines older than `since` seconds where the line
-- says its time; note the age of the newest error line kept.
local function apply_window(lg, since, by_manager)
  lg.window = since
  lg.window_by = by_manager and "manager" or "timestamps"
  lg.older, lg.untimed = 0, 0
  local now, kept = os.time(), {}
  for _, line in ipairs(lg.errors) do
    local at = line_time(line)
    local age = at and math.max(0, now - at)
    if age and age > since and not by_manager then
      lg.older = lg.older + 1
      lg.older_newest_age = math.min(lg.older_newest_age or age, age)
    else
      kept[#kept + 1] = line
      if age then lg.newest_error_age = math.min(lg.newest_error_age or age, age)
      else lg.untimed = lg.untimed + 1 end
    end
  end
  lg.errors = kept
end

function service.logs(name, opts)
  check_name("logs", name)
  opts = opts or {}
  local t = target_of(opts)
  local m = service.manager(opts)
  local since = opts.since
  if since ~= nil then
    if tonumber(since) == nil then errors.raise("usage", "service.logs: since must be a number of seconds", { primitive = "service" }) end
    since = math.max(1, math.floor(tonumber(since)))
  end
  local o = { lines = opts.lines or DEFAULT_LINES, errors = opts.errors ~= false, since = since }
  if MANAGERS[m].before_logs then
    local why = MANAGERS[m].before_logs(t, name, opts)
    if why then
      errors.raise("failed", string.format("service %s: logs through %s (%s): %s", name, m, service.where(opts), why), { primitive = "service" })
    end
  end
  local argv, filtered, cut, by_manager = MANAGERS[m].argv(t, "logs", name, o)
  local r = run_argv(t, argv, true, opts.timeout or READ_TIMEOUT, opts.quiet ~= false, MANAGERS[m].env
    and MANAGERS[m].env(t))
  if r.code ~= 0 then
    errors.raise("failed", string.format("service %s: logs through %s (%s) exited with code %d: %s", name, m,
      service.where(opts), r.code, last_line(r)), { primitive = "service" })
  end
  local text = r.stdout
  local lg = { service = name, manager = m, text = text, lines = {}, errors = {},
    filtered = filtered and true or false }
  for line in text:gmatch("[^\n]+") do
    if line:match("%S") and not is_note(line) then lg.lines[#lg.lines + 1] = line end
  end
  if cut and #lg.lines > o.lines then          -- read by bytes: the first line may be cut too
    local n = #lg.lines
    table.move(lg.lines, n - o.lines + 1, n, 1)
    for i = n, o.lines + 1, -1 do lg.lines[i] = nil end
  end
  for _, line in ipairs(lg.lines) do
    if filtered or looks_like_error(line) then lg.errors[#lg.errors + 1] = line end
  end
  if since then apply_window(lg, since, by_manager) end
  return lg
end

-- level: where a failure is raised, as error()'s (3: the caller of
-- service.restart/start/stop).
local function change(action, name, opts, level)
  opts = opts or {}
  local t = target_of(opts)
  local m = service.manager(opts)
  local M = MANAGERS[m]
  local timeout = opts.timeout or CHANGE_TIMEOUT
  local r
  if M.change then
    r = M.change(t, action, name, { timeout = timeout, quiet = opts.quiet })
  else
    r = run_argv(t, M.argv(t, action, name, opts), false, timeout, opts.quiet)
  end
  local res = { service = name, manager = m, action = action, ok = r.code == 0, code = r.code,
    output = output_of(r), reason = last_line(r), dry_run = r.dry_run, note = r.note,
    retryable = r.retryable ~= false }
  if not res.ok and opts.check ~= false then
    local detail = res.reason ~= "" and (": " .. res.reason) or ""
    if r.ran == false then
      error(string.format("service %s: cannot %s through %s (%s)%s", name, action, m, service.where(opts),
        detail), level or 3)
    end
    error(string.format("service %s: %s through %s (%s) exited with code %d%s", name, action, m,
      service.where(opts), r.code, detail), level or 3)
  end
  return res
end

-- service.restart, service.start, service.stop
for _, action in ipairs({ "restart", "start", "stop" }) do
  service[action] = function(name, opts)
    check_name(action, name)
    return change(action, name, opts)
  end
end

function service.default(given, opts)
  if given ~= nil and given ~= "" then return given end
  local name = service.list(opts)[1]
  if name == nil and opts and opts.needed_for then
    error(string.format("no service to %s: pass -p service=NAME or add services = { \"api\" } to the target " ..
      "(docs/targets.md)", opts.needed_for), 0)
  end
  return name
end

local MAINTENANCE_TIMEOUT = 300

local function has_maintenance(t)
  return type(t.commands) == "table" and t.commands.maintenance_on ~= nil
end

-- Maintenance mode on or off through the target's commands.
local function maintenance_mode(t, name, mode, opts)
  local key = "maintenance_" .. mode
  if type(t.commands[key]) ~= "table" then
    error(string.format("service: %s has commands.maintenance_on but no commands.%s: add it " ..
      "(argv, %%s = the service)", target_label(t), key), 0)
  end
  local r = run_argv(t, commands_argv(t, key, name), false, opts.timeout or MAINTENANCE_TIMEOUT, opts.quiet)
  local res = { service = name, manager = t.manager, action = key, how = "maintenance", ok = r.code == 0,
    code = r.code, output = output_of(r), reason = last_line(r), dry_run = r.dry_run }
  if not res.ok then
    error(string.format("service %s: maintenance mode %s (%s) exited with code %d%s", name, mode,
      service.where(opts), r.code, res.reason ~= "" and (": " .. res.reason) or ""), 0)
  end
  return res
end

-- down = true: out of use; false: back.  Says what it did.
local function use(name, down, opts)
  opts = opts or {}
  local t = target_of(opts)
  local r
  if has_maintenance(t) then
    local mode = down and "on" or "off"
    r = maintenance_mode(t, name, mode, opts)
    r.said = r.dry_run and string.format("dry run: would turn maintenance mode %s for %s", mode, name)
      or string.format("%s: maintenance mode %s", name, mode)
    r.left = down and not r.dry_run and (name .. " is in maintenance mode") or nil
  else
    r = change(down and "stop" or "start", name, opts, 4)   -- change, use, down/up, the caller
    r.how = "stop"
    r.said = r.dry_run and string.format("dry run: would %s %s", down and "stop" or "start", name)
      or (name .. (down and " stopped" or " started"))
    r.left = down and not r.dry_run and (name .. " is stopped") or nil
  end
  log.info("%s", r.said)
  return r
end

function service.down(name, opts)
  check_name("down", name)
  local r = use(name, true, opts)
  return r
end

function service.up(name, opts)
  check_name("up", name)
  local r = use(name, false, opts)
  return r
end

function service.maintenance(name, fn, opts)
  check_name("maintenance", name)
  if type(fn) ~= "function" then errors.raise("usage", "service.maintenance: expected the work as a function", { primitive = "service" }) end
  service.down(name, opts)
  local res = table.pack(pcall(fn))
  local okup, uperr = pcall(service.up, name, opts)
  if not res[1] then
    if not okup then error(string.format("%s; and putting %s back failed: %s", tostring(res[2]), name,
      tostring(uperr)), 0) end
    error(res[2], 0)
  end
  if not okup then error(uperr, 0) end
  return table.unpack(res, 2, res.n)
end

return service
