-- ssh: commands on remote hosts (C verbs in src/lib_ssh.c, libssh2).
--
--   local s <close> = ssh.connect{ host = "web1", user = "deploy" }
--   local r = s:exec("systemctl is-active nginx", { readonly = true })
--   --> { code = 0, ok = true, stdout = "active\n", stderr = "", duration = 0.01, host = ... }
--   s:exec("systemctl restart nginx", { timeout = 120 })
--   local rs = ssh.exec({ "web1", "deploy@web2:2222" }, "uptime", { readonly = true })
--
-- ssh.connect{...}: host (required; "user@host:port" is accepted too),
-- port (22), user (the operator's login name), key (a path or a list of
-- paths; default: whichever of ~/.ssh/id_ed25519, id_ecdsa, id_rsa exist),
-- passphrase (for the key; a secret), agent (true: also try ssh-agent's
-- keys, after the files), known_hosts (~/.ssh/known_hosts), accept_new,
-- timeout (10 s for name lookup, TCP connect, handshake and login together;
-- connect_timeout is the same).
--
-- Host keys are checked against known_hosts.  An unknown key is refused
-- with its SHA256 fingerprint; accept_new = true adds it to the file (and
-- says so), the explicit way to trust a new host.  A key that differs from
-- the one on file is always refused, accept_new or not, with both
-- fingerprints and the line to remove.
--
-- s:exec(cmd, opts): cmd is a shell command line (a list is quoted into
-- one).  opts: timeout (60 s, 0 = none), stdin (a string, then EOF),
-- readonly, check, quiet (no echo of the command and its output), secret
-- (the output is a secret: marked before anything is shown or recorded,
-- never streamed, recorded as byte counts, left out of error messages).  As with
-- exec, a non-zero exit raises "... exited with code N: <stderr>" unless
-- check = false, and then r.ok is false.  A command killed by a signal has
-- r.signal ("TERM") and code 128 + its number.  On a timeout or Ctrl-C the
-- channel is closed and the call raises; the remote command may still run
-- (libssh2 1.10 cannot signal it).  One command at a time on a session:
-- parallel branches each open their own.
--
-- ssh.exec(hosts, cmd, opts) runs cmd on every host at once (opts.parallel
-- at a time, default 32), each on a session of its own that is closed
-- afterwards, and returns one result per host, in order, each with host=
-- and, for a failure, ok = false and error=.  hosts are strings as above
-- or tables of connect options; opts holds connect options for all of
-- them (a user or port a host names itself wins), connect_timeout, and the
-- exec options (timeout is the command's).
-- Like parallel, it raises when any host failed unless check = false.
--
-- Dry run: connecting runs for real (it changes nothing and proves the
-- host is reachable and trusts us), except that accept_new does not write
-- known_hosts; exec runs only with readonly = true, and is otherwise shown
-- and recorded as simulated, returning code 0 and empty output.
--
-- Every connect and exec is a `call` event (primitive ssh, args.op connect
-- or exec) with the target, options (passphrase as ***), outcome and
-- duration; an exec's record holds its exit code and output (its byte
-- counts with secret = true).
local api = require("runbook.api")
local context = require("runbook.context")
local cssh = require("runbook.lazy")("runbook.ssh")
local errors = require("runbook.errors")
local loop = require("runbook.loop")
local networds = require("runbook.networds")
local operator = require("runbook.operator")
local transcript = require("runbook.transcript")
local ui = require("runbook.ui")

local CONNECT_TIMEOUT, EXEC_TIMEOUT, FANOUT_LIMIT = 10, 60, 32
local DEFAULT_KEYS = { "~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa" }

local CONNECT_OPTS = { "host", "port", "user", "key", "passphrase", "agent", "known_hosts",
  "accept_new", "timeout", "connect_timeout" }
local EXEC_OPTS = { "timeout", "stdin", "readonly", "check", "quiet", "secret" }
local FANOUT_OPTS = { "max_errors", "port", "user", "key", "passphrase", "agent", "known_hosts", "accept_new",
  "connect_timeout", "timeout", "stdin", "readonly", "check", "quiet", "secret", "parallel" }

local SIGNALS = { HUP = 1, INT = 2, QUIT = 3, ILL = 4, TRAP = 5, ABRT = 6, BUS = 7, FPE = 8,
  KILL = 9, USR1 = 10, SEGV = 11, USR2 = 12, PIPE = 13, ALRM = 14, TERM = 15 }

local function set_of(list)
  local s = {}
  for _, k in ipairs(list) do s[k] = true end
  return s
end

-- Refuse unknown option names: a typo (acept_new) must not pass silently.
local function check_options(where, opts, names)
  local allowed = set_of(names)
  for k in pairs(opts) do
    if not allowed[k] then
      error(string.format("%s: unknown option %q (options: %s)", where, tostring(k),
        table.concat(names, ", ")), 0)
    end
  end
end

local function expand(path)
  if path:sub(1, 2) == "~/" then return (os.getenv("HOME") or "") .. path:sub(2) end
  return path
end

-- Can path be read?  And if not, why ("No such file or directory", "Too
-- many open files": a fan-out past the descriptor limit is not a bad key=).
local function readable(path)
  local f, err = io.open(path, "r")
  if f then f:close() end
  return f ~= nil, err and (err:match(": ([^:]+)$") or err)
end

-- "user@host:port", "host", "[v6]:port" -> host, user, port
local function parse_target(s)
  local user, rest = s:match("^([^@]+)@(.+)$")
  rest = rest or s
  local host, port = rest:match("^%[([^%]]+)%]:?(%d*)$")
  if not host then host, port = rest:match("^([^:]+):(%d+)$") end
  if not host then host, port = rest, "" end
  return host, user, tonumber(port)
end

local function target_of(user, host, port)
  return string.format(host:find(":") and "%s@[%s]:%d" or "%s@%s:%d", user, host, port)
end

local function want(where, opts, k, kind)
  local v = opts[k]
  if v ~= nil and type(v) ~= kind then
    error(string.format("%s: %s must be a %s, not a %s", where, k, kind, type(v)), 0)
  end
  return v
end

-- The key files to try, expanded and checked before touching the network.
local function key_list(where, opts)
  local key = opts.key
  if key == nil then
    local found = {}
    for _, k in ipairs(DEFAULT_KEYS) do
      if readable(expand(k)) then found[#found + 1] = expand(k) end
    end
    if #found == 0 and not opts.agent then
      error(string.format("%s: no key to log in with: none of %s exists (pass key = PATH, " ..
        "or agent = true)", where, table.concat(DEFAULT_KEYS, ", ")), 0)
    end
    return found
  end
  if type(key) == "string" then key = { key } end
  if type(key) ~= "table" then error(where .. ": key must be a path or a list of paths", 0) end
  local keys = {}
  for i, k in ipairs(key) do
    if type(k) ~= "string" then error(string.format("%s: key[%d] is not a path", where, i), 0) end
    keys[i] = expand(k)
    local ok, why = readable(keys[i])
    if not ok then
      error(string.format("%s: cannot read key file %s: %s (check key=)", where, keys[i], why), 0)
    end
  end
  return keys
end

-- Check connect options; returns the C spec and the arguments to record.
local function connect_spec(opts, dry_run)
  local where = "ssh.connect"
  if type(opts) ~= "table" then error(where .. ": expected a table {host=, user=, key=, ...}", 0) end
  check_options(where, opts, CONNECT_OPTS)
  local given = want(where, opts, "host", "string")
  if given == nil or given == "" then error(where .. ": host is required", 0) end
  local host, user, port = parse_target(given)
  user = want(where, opts, "user", "string") or user or operator.username()
  port = want(where, opts, "port", "number") or port or 22
  if port ~= math.floor(port) or port < 1 or port > 65535 then
    error(string.format("%s: port must be 1-65535, not %s", where, tostring(port)), 0)
  end
  local timeout = want(where, opts, "connect_timeout", "number") or
    want(where, opts, "timeout", "number") or CONNECT_TIMEOUT
  local passphrase = want(where, opts, "passphrase", "string")
  if passphrase then transcript.secret(passphrase) end
  want(where, opts, "agent", "boolean")
  want(where, opts, "accept_new", "boolean")
  local spec = { host = host, port = math.tointeger(port), user = user, keys = key_list(where, opts),
    passphrase = passphrase, agent = opts.agent == true, timeout = timeout,
    known_hosts = expand(want(where, opts, "known_hosts", "string") or "~/.ssh/known_hosts"),
    accept_new = opts.accept_new == true, save_new = not dry_run }
  local args = { op = "connect", host = host, port = spec.port, user = user, keys = spec.keys,
    agent = spec.agent, known_hosts = spec.known_hosts, accept_new = spec.accept_new,
    timeout = timeout, passphrase = passphrase and "***" or nil }
  return spec, args, target_of(user, host, spec.port)
end

local function short(cmd)
  cmd = cmd:gsub("%s+", " ")
  return #cmd > 60 and (cmd:sub(1, 57) .. "...") or cmd
end

-- The message for a command that exited non-zero (or was killed): with an
-- excerpt of its output, unless the call was secret = true.
local function exit_message(target, cmd, r, secret)
  return string.format("ssh %s: `%s` exited with code %d%s%s", target, short(cmd), r.code,
    r.signal and (" (signal " .. r.signal .. ")") or "", api.failure_detail(r, secret))
end

-- Fill in what the C result leaves to policy.
local function finish(r, target)
  if r.signal then r.code = 128 + (SIGNALS[r.signal] or 127) end
  r.ok = r.code == 0
  r.host = target
  return r
end

local Session = {}
Session.__index = Session
Session.__close = function(s) s:close() end
Session.__tostring = function(s) return "ssh session " .. s.target end

local function announce_new_key(spec, target, info)
  local what = string.format("the host key of %s (%s %s) to %s", target:gsub("^[^@]*@", ""), info.key_type,
    info.fingerprint, spec.known_hosts)
  if info.saved then
    ui.print("  " .. ui.style("yellow", "ssh: added") .. " " .. what)
  else
    ui.print("  " .. ui.style("magenta", "would add:") .. " " .. what .. " (trusted for this run only)")
  end
end

-- A session of the running code's run.  Raises a plain message for a
-- misuse, an error object for a failure.
local function connect(opts, quiet)
  local run = context.need("ssh.connect")
  local spec, args, target = connect_spec(opts, run.dry_run)
  local ok, res = api.call(run, {
    primitive = "ssh", args = args, mutating = false,
    describe = "ssh connect " .. target,
    perform = function()
      if not quiet then ui.print("  " .. ui.style("dim", "ssh " .. target)) end
      local handle, info = cssh.connect(spec)
      if handle == nil then networds.raise("ssh", info) end
      return { handle = handle, info = info }
    end,
    summary = function(r)
      return { fingerprint = r.info.fingerprint, key_type = r.info.key_type, auth = r.info.auth,
        added_to_known_hosts = r.info.saved or nil, trusted_new_key = r.info.new_key or nil }
    end,
    -- a --scenario result stands in for the session: it has no connection
    complete = function(r) return { info = r } end,
  })
  if not ok then error(res, 0) end
  local info = res.info or {}
  if info.new_key then announce_new_key(spec, target, info) end
  return setmetatable({ run = run, handle = res.handle, host = spec.host, port = spec.port, user = spec.user,
    target = target, fingerprint = info.fingerprint, key_type = info.key_type }, Session)
end

-- The command and options of s:exec, checked.
local function exec_args(cmd, opts)
  if type(cmd) == "table" then cmd = api.argv_string(cmd) end
  if type(cmd) ~= "string" or cmd == "" then error("ssh exec: expected a command string", 0) end
  opts = opts or {}
  if type(opts) ~= "table" then error("ssh exec: options must be a table", 0) end
  check_options("ssh exec", opts, EXEC_OPTS)
  return cmd, opts, want("ssh exec", opts, "timeout", "number") or EXEC_TIMEOUT,
    want("ssh exec", opts, "stdin", "string"), want("ssh exec", opts, "secret", "boolean") or nil
end

local function exec_on(s, cmd, opts)
  local timeout, stdin, secret
  cmd, opts, timeout, stdin, secret = exec_args(cmd, opts)
  local ok, res = api.call(s.run, api.command_call({
    primitive = "ssh",
    args = { op = "exec", host = s.target, cmd = cmd, readonly = opts.readonly or false,
      timeout = timeout, stdin_bytes = stdin and #stdin or nil },
    mutating = not opts.readonly,
    describe = string.format("ssh %s: %s", s.target, cmd),
    secret = secret,
    perform = function()
      if s.handle == nil then
        errors.usage(string.format("ssh %s: the session is closed (connect again)", s.target), "ssh")
      end
      if not opts.quiet then ui.print("  " .. ui.style("dim", "$ [" .. s.target .. "] " .. cmd)) end
      local feed, done = api.output(opts.quiet or secret)   -- a secret is never streamed
      local okx, r, f = pcall(s.handle.exec, s.handle, cmd, timeout, stdin, feed)
      r = done(okx, r)
      if r == nil then networds.raise("ssh", f) end
      return finish(r, s.target)
    end,
  }, function(r) return finish(r, s.target) end, { host = s.target }))
  if not ok then error(res, 0) end
  if opts.check ~= false and res.code ~= 0 then
    errors.raise("failed", exit_message(s.target, cmd, res, secret),
      { primitive = "ssh", code = res.code, signal = res.signal, host = s.target })
  end
  return res
end

-- f(...); a plain message it raises is a misuse (the checks above raise
-- messages), an error object goes on as it is.
local function checked(f, ...)
  local res = table.pack(pcall(f, ...))
  if not res[1] then error(errors.from(res[2], "ssh", "usage"), 0) end
  return table.unpack(res, 2, res.n)
end

function Session:exec(cmd, opts)
  return checked(exec_on, self, cmd, opts)
end

function Session:close()
  if self.handle ~= nil then
    checked(self.handle.close, self.handle)
    self.handle = nil
  end
end

local ssh = {}

function ssh.connect(opts)
  return checked(connect, opts)
end

-- One host of a fan-out: never raises but for Ctrl-C, which parallel
-- sees on its own.
local function fan_one(h, copts, cmd, eopts)
  local c = {}
  for k, v in pairs(copts) do c[k] = v end
  if type(h) == "table" then
    for k, v in pairs(h) do c[k] = v end
  else
    c.host = h
    -- a user or port in the host's own name ("deploy@web2:2222") wins over
    -- the fan-out's user= and port=, every host's default
    local _, user, port = parse_target(tostring(h))
    if user then c.user = nil end
    if port then c.port = nil end
  end
  local label = type(c.host) == "string" and c.host or tostring(h)
  local okc, s = pcall(connect, c, true)
  if not okc then return { host = label, ok = false, error = errors.message(s), kind = errors.kind(s) } end
  local okx, r = pcall(exec_on, s, cmd, eopts)
  pcall(s.close, s)
  if not okx then return { host = s.target, ok = false, error = errors.message(r), kind = errors.kind(r) } end
  if not r.ok then r.error, r.kind = exit_message(s.target, cmd, r, eopts.secret), "failed" end
  return r
end

-- The fan-out's options checked: connect options, exec options.
local function fan_options(hosts, cmd, opts)
  if type(hosts) ~= "table" or #hosts == 0 then error("ssh.exec: expected a non-empty list of hosts", 0) end
  if type(cmd) == "table" then cmd = api.argv_string(cmd) end
  if type(cmd) ~= "string" or cmd == "" then error("ssh.exec: expected a command string", 0) end
  opts = opts or {}
  if type(opts) ~= "table" then error("ssh.exec: options must be a table", 0) end
  check_options("ssh.exec", opts, FANOUT_OPTS)
  local copts = {}
  for _, k in ipairs(CONNECT_OPTS) do copts[k] = opts[k] end
  copts.timeout = nil
  local eopts = { timeout = opts.timeout, stdin = opts.stdin, readonly = opts.readonly,
    secret = opts.secret, quiet = true, check = false }
  return cmd, opts, copts, eopts
end

-- "ssh.exec: 2 of 5 hosts failed: ...": its kind is the hosts' when they
-- all failed alike.
local function fan_failure(hosts, results, failed)
  local kind
  for _, r in ipairs(results) do
    if not r.ok then kind = (kind == nil or kind == r.kind) and r.kind or "error" end
  end
  errors.raise(kind, string.format("ssh.exec: %d of %d hosts failed: %s%s", #failed, #hosts,
    table.concat(failed, "; ", 1, math.min(3, #failed)), #failed > 3 and "; ..." or ""),
    { primitive = "ssh", results = results })
end

local function fan_out(hosts, cmd, opts)
  local copts, eopts
  cmd, opts, copts, eopts = fan_options(hosts, cmd, opts)
  local t0 = loop.now()
  local okp, results, errs = pcall(api.parallel, hosts, function(h) return fan_one(h, copts, cmd, eopts) end,
    { limit = opts.parallel or FANOUT_LIMIT, check = false, max_errors = opts.max_errors, primitive = "ssh",
      is_failure = function(r) return not r.ok end })
  if not okp then
    if loop.interrupts() > 0 then
      errors.raise("interrupted", string.format("ssh.exec on %d hosts: %s", #hosts, loop.interrupt_text()),
        { primitive = "ssh" })
    end
    error(results, 0)
  end
  local failed = {}
  for i = 1, #hosts do
    if results[i] == nil then        -- past max_errors: not tried; or done in the run --retry-failed retries
      local h = hosts[i]
      local host = type(h) == "table" and tostring(h.host) or tostring(h)
      results[i] = errs[i] == nil and { host = host, ok = true, skipped = true } or
        { host = host, ok = false, kind = "untried", error = errors.message(errs[i]) }
    end
    local r = results[i]
    if not r.ok then
      -- (the messages name their host already, but for an option error)
      failed[#failed + 1] = r.error:find(r.host, 1, true) and r.error or (r.host .. ": " .. r.error)
    end
  end
  if not opts.quiet then
    local done = 0
    for _, r in ipairs(results) do done = done + (r.skipped and 1 or 0) end
    ui.print("  " .. ui.style("dim", string.format("ssh.exec on %d hosts: %d ok, %d failed%s (%s)",
      #hosts, #hosts - #failed - done, #failed,
      done > 0 and string.format(", %d done in the run retried", done) or "", ui.duration(loop.now() - t0))))
    for _, f in ipairs(failed) do ui.print("    " .. ui.style("red", "failed") .. " " .. f) end
  end
  if #failed > 0 and opts.check ~= false then fan_failure(hosts, results, failed) end
  return results
end

function ssh.exec(hosts, cmd, opts)
  return checked(fan_out, hosts, cmd, opts)
end

return ssh
