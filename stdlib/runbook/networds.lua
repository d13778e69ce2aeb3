-- runbook.networds: the operator's words for a failed network call.
--
--   networds.message(primitive, facts) -> text
--
-- The C halves of redis, ssh and http (src/lib_redis.c, lib_ssh.c,
-- lib_http.c, and src/net.c under the first two) return facts, never
-- prose: nil, { kind =, stage =, who =, errno =, reason =, host =, port =,
-- addr =, wake =, timeout =, ... }.  This file is the one place that turns
-- them into what the operator reads, so the same failure reads the same in
-- every primitive: only the service's name and where to look ("the host
-- and port in the URL", "host= and port=") differ, by primitive (PROFILES).
--
-- kind is one of "timeout", "refused", "resolve", "tls", "auth",
-- "hostkey", "protocol", "closed", "server": what an author can branch
-- on.  stage says where it happened: "resolve", "connect", "handshake",
-- "tls", "hostkey", "auth", "call" (a command or request), "exec" (ssh).
-- A wait cut short is kind "timeout" with wake = "timeout" (the call's own
-- limit), "interrupt" (Ctrl-C, SIGTERM) or "cancel" (the step's timeout).
local errors = require("runbook.errors")
local loop = require("runbook.loop")

local M = {}

local PROFILES = {
  redis = { service = "Redis", server = "a Redis server", protocol = "Redis protocol",
    check = "the host and port in the URL", check_host = "the host in the URL",
    connect_limit = "connect_timeout=", call_limit = "timeout=", conn_limit = "maxclients",
    reply = "the reply" },
  ssh = { service = "sshd", server = "an SSH server", protocol = "SSH",
    check = "host= and port=", check_host = "the host name",
    connect_limit = "timeout=", call_limit = "timeout=", conn_limit = "MaxSessions",
    reply = "the reply" },
  http = { service = "the service", server = "an HTTP server", protocol = "HTTP",
    check = "the URL/--target", check_host = "the host name in the URL/--target",
    connect_limit = "connect_timeout=", call_limit = "timeout=",
    conn_limit = "a connection limit", reply = "the response", call_op = "request" },
}

-- What was under way at each stage, for "X timed out", "X interrupted".
local STAGE_OP = { resolve = "resolving the host name", connect = "connect",
  handshake = "SSH handshake", tls = "TLS handshake", hostkey = "host key check",
  auth = "authentication", agent = "authentication" }

local function secs(t)
  return string.format("%.1f", t or 0)
end

local function where(f)
  local port = f.port and (":" .. tostring(math.tointeger(f.port) or f.port)) or ""
  return (f.addr or f.host or "?") .. port
end

-- "PING " before "timed out": the command or request the stage ran.
local function op_of(f)
  if f.stage == "call" or f.stage == "exec" then return f.command end
  return STAGE_OP[f.stage] or f.stage
end

local function prefixed(f, text)
  local op = op_of(f)
  return string.format("%s: %s%s", f.who or "?", op and (op .. " ") or "", text)
end

-- The timeout hints: what to check when a stage got no answer in time.
-- f.limit names the option that set the limit, when C knows it.
local function timeout_hint(p, f)
  local s = f.stage
  local limit = f.limit and (f.limit .. "=") or (s == "call" and p.call_limit or p.connect_limit)
  local raise = limit .. " raises the limit"
  if s == "resolve" then
    return string.format("check DNS and %s; %s", p.check_host, raise)
  elseif s == "connect" then
    return string.format("is the host up, and the port not dropped by a firewall? check %s; %s",
      p.check, raise)
  elseif s == "handshake" or s == "tls" or s == "call" then
    return string.format("the server accepted the connection but did not answer: is it stuck " ..
      "or overloaded, or not %s? %s", s == "tls" and "a TLS port" or p.server, raise)
  elseif s == "agent" then
    return "is the agent answering? " .. raise
  elseif s == "auth" then
    return "is the server overloaded? " .. raise
  end
  return raise
end

local function wait_words(p, f)
  if f.wake == "interrupt" or f.wake == "cancel" then
    local op = op_of(f) or p.call_op
    return string.format("%s: %s%s", f.who or "?", op and (op .. " ") or "",
      f.wake == "cancel" and "stopped: the step's timeout ran out" or loop.interrupt_text())
  end
  local waiting = f.stage == "call" and (" waiting for " .. p.reply) or ""
  return prefixed(f, string.format("timed out after %s s%s (%s)", secs(f.timeout), waiting,
    timeout_hint(p, f)))
end

local function resolve_words(p, f)
  return string.format("%s: cannot resolve host name '%s'%s (check %s and DNS)", f.who or "?",
    f.host or "?", f.reason and (": " .. f.reason) or "", p.check_host)
end

local UNREACHABLE = { EHOSTUNREACH = true, ENETUNREACH = true, EHOSTDOWN = true, ENETDOWN = true }

local function refused_words(p, f)
  if f.errno == "ECONNREFUSED" then
    return string.format("%s: connection refused by %s (is %s running and listening on port " ..
      "%s? check %s)", f.who or "?", where(f), p.service, tostring(math.tointeger(f.port) or "?"),
      p.check)
  elseif UNREACHABLE[f.errno] then
    return string.format("%s: %s is unreachable: %s (check %s and the network route to it)",
      f.who or "?", f.addr or f.host or "?", f.reason or f.errno, p.check_host)
  end
  return string.format("%s: cannot connect to %s: %s (check %s and the firewall)", f.who or "?",
    where(f), f.reason or f.errno or "?", p.check)
end

local function closed_words(p, f)
  local op = f.command and (f.command .. ": ") or ""
  if f.by == "runbook" then
    return string.format("%s: %sthe connection was closed during the call", f.who or "?", op)
  end
  if f.eof then
    return string.format("%s: %sthe server closed the connection%s (check the server's log: a " ..
      "restart, %s, or a proxy's idle timeout)", f.who or "?", op,
      f.answered == false and " without answering" or "", p.conn_limit)
  end
  return string.format("%s: %sconnection lost: %s (check the server's log and the network)",
    f.who or "?", op, f.reason or "?")
end

local function protocol_words(p, f)
  local op = f.command and (f.command .. ": ") or ""
  return string.format("%s: %sthe reply is not %s (%s); is that port %s?", f.who or "?", op,
    p.protocol, f.reason or "?", p.server)
end

local SPECIAL = {}     -- primitive -> function(f) -> text or nil, below

function M.message(primitive, f)
  local p = PROFILES[primitive]
  if type(f) ~= "table" then return tostring(f) end
  local special = SPECIAL[primitive] and SPECIAL[primitive](f, p)
  if special then return special end
  local k = f.kind
  if k == "timeout" then return wait_words(p, f) end
  if k == "resolve" then return resolve_words(p, f) end
  if k == "refused" then return refused_words(p, f) end
  if k == "closed" then return closed_words(p, f) end
  if k == "protocol" then return protocol_words(p, f) end
  return string.format("%s: %s%s", f.who or primitive, f.message or f.reason or k,
    f.hint and (" (" .. f.hint .. ")") or "")
end

-- ---- ssh: host keys, authentication, the handshake, exec ------------------

local function key_text(f)
  return string.format("%s %s", f.key_type or "?", f.fingerprint or "?")
end

local HOSTKEY = {
  unknown = function(f)
    return string.format("ssh: host key for %s:%d is not known (%s): %s has no entry for it. " ..
      "Check the fingerprint with the server's owner (ssh-keygen -lf /etc/ssh/ssh_host_%s_key.pub " ..
      "on it), then connect with accept_new = true to add it", f.host, f.port, key_text(f),
      f.known_hosts, f.key_file or "*")
  end,
  changed = function(f)
    local at = f.line and string.format("%s line %d", f.known_hosts, f.line) or f.known_hosts
    return string.format("ssh: host key for %s:%d has CHANGED (%s), known_hosts says %s %s (%s). " ..
      "Someone may be intercepting the connection, or the server was reinstalled: verify the new " ..
      "key with its owner, then remove the old entry (ssh-keygen -R '%s' -f %s) and connect with " ..
      "accept_new = true", f.host, f.port, key_text(f), f.old_key_type or "?",
      f.old_fingerprint or "?", at, f.known_name or f.host, f.known_hosts)
  end,
  revoked = function(f)
    return string.format("ssh: host key for %s:%d (%s) is REVOKED: %s line %d marks it @revoked. " ..
      "Refusing to connect: the key must not be trusted. Ask the server's owner to install a new " ..
      "host key, then put that one in known_hosts", f.host, f.port, key_text(f), f.known_hosts,
      f.line or 0)
  end,
  not_on_file = function(f)
    return string.format("ssh: host key for %s:%d (%s) cannot be checked: %s holds only %s keys " ..
      "for this host. It is not added, even with accept_new = true: verify the new key with the " ..
      "server's owner and put it in known_hosts", f.host, f.port, key_text(f), f.known_hosts,
      f.types or "?")
  end,
  untyped = function(f)
    return f.who .. ": the server's host key is of a type runbook cannot check"
  end,
  unreadable = function(f)
    return string.format("%s: cannot read the known_hosts file %s: %s (check its permissions)",
      f.who, f.known_hosts, f.reason or "?")
  end,
  unwritable = function(f)
    return string.format("%s: cannot add the host key to the known_hosts file %s: %s (check its " ..
      "permissions)", f.who, f.known_hosts, f.reason or "?")
  end,
  prefer = function(f)
    return string.format("%s: cannot ask for the host key types known_hosts holds (%s): %s",
      f.who, f.types or "?", f.reason or "?")
  end,
}

local TRIED = {
  refused = "refused by the server",
  unusable = "cannot be used: wrong passphrase, or an unreadable key file",
  no_agent = "cannot connect to it (is SSH_AUTH_SOCK set?)",
  no_list = "cannot list its keys",
  empty = "it holds no keys",
}

-- "key /k: refused by the server; the agent: it holds no keys"
local function tried_text(list)
  local parts = {}
  for i, t in ipairs(list or {}) do
    local what = t.key and ("key " .. t.key) or (t.problem == "refused" and "the agent's keys"
      or "the agent")
    parts[i] = what .. ": " .. (TRIED[t.problem] or t.reason or t.problem or "?")
  end
  return table.concat(parts, "; ")
end

local function auth_words(f)
  if f.problem == "no_publickey" then
    return string.format("ssh: authentication failed for %s: the server does not accept public " ..
      "keys (it accepts: %s), and runbook authenticates with keys only", f.target, f.methods or "?")
  elseif f.problem == "start" then
    return string.format("%s: cannot start authentication: %s", f.who, f.reason or "?")
  end
  local tried = tried_text(f.tried)
  return string.format("ssh: authentication failed for %s (tried %s; the server accepts: %s). " ..
    "Check that the public key is in %s's authorized_keys on the server, the user name, and " ..
    "passphrase=", f.target, tried ~= "" and tried or "nothing: no key and no agent",
    f.methods or "?", f.user or "?")
end

local function handshake_words(f)
  if not f.types then
    return string.format("%s: SSH handshake with %s failed: %s (is port %d an SSH server? a busy " ..
      "sshd drops new connections beyond MaxStartups)", f.who, where(f), f.reason or "?", f.port)
  end
  return string.format("%s: SSH handshake with %s failed: %s. known_hosts %s holds only %s host " ..
    "keys for this host, so only those were offered, and the server did not agree to one%s. Its " ..
    "key cannot be checked against one on file and is not added: verify the server's current " ..
    "host key with its owner (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub on it) and put it in " ..
    "known_hosts", f.who, where(f), f.reason or "?", f.known_hosts, f.types,
    f.rsa_on_file and " (libssh2 checks RSA host keys only as ssh-rsa, SHA-1, which OpenSSH 8.8 " ..
    "and later refuse unless HostKeyAlgorithms allows it)" or "")
end

local EXEC_PROBLEM = {
  read = { "reading its output failed", "the connection may be lost" },
  channel = { "cannot open a channel", "is the connection lost? sshd's MaxSessions limits " ..
    "channels on one connection" },
  exec = { "the server refused to run it", "check sshd's logs" },
}

local function short(cmd)
  cmd = (cmd or "?"):gsub("%s+", " ")
  return #cmd > 60 and (cmd:sub(1, 57) .. "...") or cmd
end

local function exec_words(f)
  local cmd = "`" .. short(f.command) .. "`"
  local still = "its channel was closed; the remote command may still be running"
  if f.kind == "timeout" then
    if f.wake == "interrupt" then
      return string.format("%s: %s %s (%s)", f.who, cmd, loop.interrupt_text(), still)
    elseif f.wake == "cancel" then
      return string.format("%s: %s stopped: the step's timeout ran out (%s)", f.who, cmd, still)
    end
    return string.format("%s: %s timed out after %s s (%s; timeout= raises the limit)", f.who, cmd,
      secs(f.timeout), still)
  end
  local what = EXEC_PROBLEM[f.problem] or { f.problem or "failed", "check sshd's logs" }
  return string.format("%s: %s: %s: %s (%s)", f.who, cmd, what[1], f.reason or "?", what[2])
end

function SPECIAL.ssh(f)
  if f.stage == "exec" then return exec_words(f) end
  if f.kind == "hostkey" then return (HOSTKEY[f.problem] or HOSTKEY.untyped)(f) end
  if f.kind == "auth" then return auth_words(f) end
  if f.kind == "protocol" and f.stage == "handshake" then return handshake_words(f) end
  return nil
end

-- ---- http: TLS, redirects, size --------------------------------------------

local function http_words(f)
  if f.kind == "tls" then
    if f.problem == "verify" then
      return string.format("%s: TLS certificate verify failed (%s; pass cacert= or " ..
        "insecure=true knowingly)", f.who, f.reason or "?")
    elseif f.problem == "cafile" then
      return string.format("%s: cannot use the CA file (%s; check cacert=)", f.who, f.reason or "?")
    end
    return string.format("%s: TLS handshake failed (%s; is this really a TLS port? check " ..
      "http:// vs https:// and the server's TLS setup)", f.who, f.reason or "?")
  elseif f.problem == "redirects" then
    return string.format("%s: too many redirects (more than %d; check for a redirect loop, or " ..
      "raise max_redirects=)", f.who, f.max_redirects or 0)
  elseif f.problem == "too_large" then
    return string.format("%s: the response is larger than %d MiB (not kept)", f.who, f.cap_mib or 0)
  elseif f.problem == "curl" then
    return string.format("%s: %s (%s)", f.who, f.curl_error or "?", f.reason or "?")
  end
  return nil
end

function SPECIAL.http(f)
  return http_words(f)
end

-- The kind an author branches on (runbook.errors) for a failure's facts:
-- the facts' own, but a wait cut short by Ctrl-C or SIGTERM is
-- "interrupted", a connection the server closed "lost", a host key "tls"
-- (what the server is cannot be trusted) and a reply in no known protocol
-- "error".
local KINDS = { closed = "lost", hostkey = "tls", protocol = "error" }

function M.kind(f)
  if type(f) ~= "table" then return "error" end
  if f.kind == "timeout" and f.wake == "interrupt" then return "interrupted" end
  return KINDS[f.kind] or f.kind or "error"
end

-- Raise the failure as an error object of primitive: its words, its
-- kind, and the facts an author may look at (stage, errno, host, port).
function M.raise(primitive, f, fields)
  local e = { primitive = primitive }
  if type(f) == "table" then
    e.stage, e.errno, e.host, e.port = f.stage, f.errno, f.host, f.port
  end
  for k, v in pairs(fields or {}) do e[k] = v end
  errors.raise(M.kind(f), M.message(primitive, f), e)
end

return M
