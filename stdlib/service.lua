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
--   pm2       pm2 jlist (status) | pm2 restart|start|stop NAME;
--             logs: pm2 logs NAME --lines 200 --nostream [--err]
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
--   "online" | "running" | "not running" | ..., code, output, restarts (pm2) }.
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
--
-- service.restart(name, opts) / service.start / service.stop -> r
--   r = { service, manager, action, ok, code, output, reason (the last line
--   of stderr, else stdout: usually why it failed), dry_run }.  A failure
--   raises "service api: restart through systemd (deploy@app1:22) exited
--   with code 1: <reason>" unless opts.check == false (then r.ok is false).
--   opts.timeout: seconds (default 120).
--     local r = service.restart("api", { check = false })
--
-- service.list() -> target.services, or {} when the target names none.
-- service.manager() -> the manager's name, checked against the target;
--   raises naming the key to add when the target lacks one.
-- service.where() -> "here" or the ssh target ("deploy@app1:22").
--
-- Every function takes opts.target to act on another target's table
-- instead of the global `target`.
local service = {}

local DEFAULT_LINES, READ_TIMEOUT, CHANGE_TIMEOUT = 200, 30, 120
local ERROR_WORDS = { "error", "fatal", "panic", "exception", "traceback", "critical", "failed" }

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

-- Each manager: argv(t, action, name, opts) for status, logs and the
-- changes, and read_status(st, r, name) to judge the status output.
local MANAGERS = {}

MANAGERS.systemd = {
  argv = function(_, action, name, opts)
    if action == "logs" then
      local argv = { "journalctl", "-u", name, "-n", tostring(opts.lines), "--no-pager" }
      if opts.errors then argv[#argv + 1] = "-p"; argv[#argv + 1] = "err" end
      return argv, opts.errors
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
    local rest
    if action == "logs" then
      rest = { "logs", "--no-color", "--tail", tostring(opts.lines), name }
    elseif action == "status" then
      rest = { "ps", "--all", "--format", "json", name }
    else
      rest = { action, name }
    end
    for _, a in ipairs(rest) do base[#base + 1] = a end
    return base
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

MANAGERS.pm2 = {
  argv = function(_, action, name, opts)
    if action == "logs" then
      local argv = { "pm2", "logs", name, "--lines", tostring(opts.lines), "--nostream" }
      if opts.errors then argv[#argv + 1] = "--err" end
      return argv, opts.errors
    elseif action == "status" then
      return { "pm2", "jlist" }
    end
    return { "pm2", action, name }
  end,
  -- pm2 may print warnings before the JSON list.
  read_status = function(st, r, name)
    st.running, st.state = false, "not in pm2's list"
    local list
    for start in ("\n" .. r.stdout):gmatch("\n()%[") do
      local ok, v = pcall(json.decode, r.stdout:sub(start - 1))
      if ok and type(v) == "table" then list = v; break end
    end
    if list == nil then
      st.state = "unknown (pm2 jlist printed no JSON list)"
      return
    end
    for _, proc in ipairs(list) do
      if proc.name == name then
        local env = type(proc.pm2_env) == "table" and proc.pm2_env or {}
        st.state = tostring(env.status or "unknown")
        st.running = env.status == "online"
        st.restarts = env.restart_time
        st.pid = proc.pid
      end
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

local MANAGER_NAMES = { "systemd", "compose", "pm2", "commands" }

function service.manager(opts)
  local t = target_of(opts)
  local m = t.manager
  if m == nil then
    missing(t, "manager", 'manager = "systemd" (or "compose", "pm2", "commands")')
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

function service.where(opts)
  local t = target_of(opts)
  if t.ssh == nil then return "here" end
  local s = sessions[t]
  if s then return s.target end
  local h = type(t.ssh) == "table" and t.ssh or {}
  return string.format("%s%s", h.user and (h.user .. "@") or "", tostring(h.host))
end

-- Run argv here or over ssh; never raises on a non-zero exit.
local function run_argv(t, argv, readonly, timeout, quiet)
  if t.ssh ~= nil then
    local r = session_for(t):exec(argv, { readonly = readonly, check = false, timeout = timeout,
      quiet = quiet })
    return r
  end
  local spec = { readonly = readonly, check = false, timeout = timeout, quiet = quiet }
  for i, a in ipairs(argv) do spec[i] = a end
  local r = exec(spec)
  return r
end

local function check_name(fn, name)
  if type(name) ~= "string" or name == "" then
    error(string.format("service.%s: expected a service name, got %s", fn, type(name)), 3)
  end
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

function service.status(name, opts)
  check_name("status", name)
  opts = opts or {}
  local t = target_of(opts)
  local m = service.manager(opts)
  local argv = MANAGERS[m].argv(t, "status", name, opts)
  local r = run_argv(t, argv, true, opts.timeout or READ_TIMEOUT, opts.quiet)
  local st = { service = name, manager = m, where = service.where(opts), code = r.code,
    output = output_of(r), dry_run = r.dry_run }
  MANAGERS[m].read_status(st, r, name)
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
-- and "-- Logs begin at ...", pm2's "[TAILING] ..." and "FILE last 200 lines:".
local function is_note(line)
  return line:match("^%-%- .* %-%-$") ~= nil or line:match("^%-%- Logs begin") ~= nil
    or line:match("^%[TAILING%]") ~= nil or line:match("last %d+ lines:%s*$") ~= nil
end

function service.logs(name, opts)
  check_name("logs", name)
  opts = opts or {}
  local t = target_of(opts)
  local m = service.manager(opts)
  local o = { lines = opts.lines or DEFAULT_LINES, errors = opts.errors ~= false }
  local argv, filtered = MANAGERS[m].argv(t, "logs", name, o)
  local r = run_argv(t, argv, true, opts.timeout or READ_TIMEOUT, opts.quiet ~= false)
  if r.code ~= 0 then
    error(string.format("service %s: logs through %s (%s) exited with code %d: %s", name, m,
      service.where(opts), r.code, last_line(r)), 2)
  end
  local lg = { service = name, manager = m, text = r.stdout, lines = {}, errors = {},
    filtered = filtered and true or false }
  for line in r.stdout:gmatch("[^\n]+") do
    if not is_note(line) then
      lg.lines[#lg.lines + 1] = line
      if filtered or looks_like_error(line) then lg.errors[#lg.errors + 1] = line end
    end
  end
  return lg
end

local function change(action, name, opts)
  opts = opts or {}
  local t = target_of(opts)
  local m = service.manager(opts)
  local argv = MANAGERS[m].argv(t, action, name, opts)
  local r = run_argv(t, argv, false, opts.timeout or CHANGE_TIMEOUT, opts.quiet)
  local res = { service = name, manager = m, action = action, ok = r.code == 0, code = r.code,
    output = output_of(r), reason = last_line(r), dry_run = r.dry_run }
  if not res.ok and opts.check ~= false then
    local detail = res.reason ~= "" and (": " .. res.reason) or ""
    error(string.format("service %s: %s through %s (%s) exited with code %d%s", name, action, m,
      service.where(opts), r.code, detail), 3)
  end
  return res
end

-- service.restart, service.start, service.stop
for _, action in ipairs({ "restart", "start", "stop" }) do
  service[action] = function(name, opts)
    check_name(action, name)
    local r = change(action, name, opts)   -- (not a tail call: errors name the caller's line)
    return r
  end
end

return service
