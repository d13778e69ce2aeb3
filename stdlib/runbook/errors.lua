-- runbook.errors: what a failure is.
--
-- A primitive that fails raises an error object {message, where, primitive,
-- kind, ...}; tostring(err) is the text the operator sees, "where: message"
-- ("runbooks/x.lua:12: redis 127.0.0.1:6379: GET: timed out after 5.0 s").
-- `where` is the runbook's own line: the first frame of the stack outside
-- the host's stdlib/ (stdlib/runbook/ included), found by walking the
-- stack when the object is made, so no caller counts levels and nobody
-- strips a "file:line: " prefix: err.message is the text without it.
-- Other fields a kind may carry: code and signal (failed), status (an
-- HTTP status), sqlstate (server, sql), errors (parallel: by index).
--
-- Kinds (docs/authoring.md lists them for authors):
local errors = {}

errors.KINDS = {
  usage = "the runbook called it wrong (an argument, an option, the phase)",
  timeout = "a wait ran past its timeout, or past the step's",
  interrupted = "Ctrl-C, or a terminating signal: pcall lets it through",
  declined = "the operator answered no (confirm, manual)",
  refused = "the connection was refused: nothing listens there",
  resolve = "the host name did not resolve",
  auth = "the login was refused (password, key, user)",
  tls = "the peer was not trusted (TLS certificate, SSH host key) or TLS failed",
  lost = "the connection was lost or closed during the call",
  server = "the server answered with an error (SQL, a Redis error reply, an unexpected HTTP status)",
  busy = "held by someone else: a lock another run holds, no free connection slot",
  failed = "a command ran and exited non-zero (exec, sh, ssh exec)",
  untried = "not tried: a fan-out's error budget (max_errors) was spent before its turn",
  error = "anything else",
}

local Error = {}
Error.__index = Error
errors.Error = Error

function Error.__tostring(e)
  if e.where then return e.where .. ": " .. e.message end
  return e.message
end

-- "text " .. err reads as the operator's text, as it did when errors were strings.
function Error.__concat(a, b)
  return tostring(a) .. tostring(b)
end

-- A decline is an error too (kind "declined"), shown without a position,
-- as confirm() always showed it: "declined: <question>".
local Declined = { __index = Error, __concat = Error.__concat }
Declined.__tostring = function(d) return d.message end
errors.Declined = Declined

local host_prefix
local function is_host(source)
  if host_prefix == nil then
    host_prefix = "@" .. require("runbook.host").datadir .. "/stdlib/"
  end
  return source:sub(1, #host_prefix) == host_prefix
end

-- Functions that stand for the author's own call (the runbook's pcall and
-- xpcall): a C function they call is called by whoever called them.
local author_calls = setmetatable({}, { __mode = "k" })

function errors.author_call(f)
  author_calls[f] = true
end

-- Is the C function at `level` of the caller's stack host glue (called
-- by the host, as api.call's pcall), rather than the runbook's way in
-- (its pcall of a primitive)?  (+1: this function's own frame.)
local function host_glue(level)
  local caller = debug.getinfo(level + 2, "Sf")
  if caller and author_calls[caller.func] then caller = debug.getinfo(level + 3, "S") end
  return caller ~= nil and caller.what ~= "C" and is_host(caller.source)
end

-- "file:line" of the first frame of the running code outside the host's
-- stdlib/, or nil.  A C function the runbook called on its own (pcall of
-- a primitive) stops the walk without a line, as Lua's luaL_where gives
-- none for it; so does a stack with no frame of the runbook's (the
-- engine's own call, a cleanup, a parallel branch of a host function).
function errors.where()
  local level = 2
  while true do
    local info = debug.getinfo(level, "Sl")
    if info == nil then return nil end
    if info.what == "C" then
      if not host_glue(level) then return nil end
    elseif not is_host(info.source) then
      if info.currentline <= 0 then return nil end
      return info.short_src .. ":" .. info.currentline
    end
    level = level + 1
  end
end

function errors.is(e)
  local mt = getmetatable(e)
  return mt == Error or mt == Declined
end

-- A new error object, positioned at the runbook's line.  fields: more
-- fields (primitive, code, status, ...).
function errors.new(kind, message, fields)
  local e = { kind = kind, message = message, where = errors.where() }
  for k, v in pairs(fields or {}) do e[k] = v end
  return setmetatable(e, Error)
end

function errors.raise(kind, message, fields)
  error(errors.new(kind, message, fields), 0)
end

-- A misuse of a verb, the commonest raise.
function errors.usage(message, primitive)
  error(errors.new("usage", message, { primitive = primitive }), 0)
end

function errors.declined(question, primitive)
  return setmetatable({ kind = "declined", message = "declined: " .. question, question = question,
    primitive = primitive, where = errors.where() }, Declined)
end

-- The kind of a failure the C half words as text (redis, ssh, http):
-- until it hands back facts, its wording is matched here, in one place.
-- First match wins.
local TEXT_KINDS = {
  { "step's timeout ran out", "timeout" }, { "timed out after", "timeout" },
  { "host key", "tls" }, { "known_hosts", "tls" }, { "TLS", "tls" }, { "certificate", "tls" },
  { "connection refused", "refused" },
  { "cannot resolve", "resolve" }, { "name not resolved", "resolve" },
  { "no usable address", "resolve" }, { "could not translate host name", "resolve" },
  { "authentication failed", "auth" }, { "authorized_keys", "auth" }, { "WRONGPASS", "auth" },
  { "NOAUTH", "auth" },
  { "connection lost", "lost" }, { "closed the connection", "lost" },
  { "connection was closed", "lost" },
}

function errors.classify(text)
  if require("runbook.loop").interrupts() > 0 then return "interrupted" end
  for _, rule in ipairs(TEXT_KINDS) do
    if text:find(rule[1], 1, true) then return rule[2] end
  end
  return "error"
end

-- An error of the author's own code crossing a primitive (db:each's fn
-- raised it): api.call records it and hands it on as it was raised.
local Carried = {}

function errors.carry(value)
  return setmetatable({ value = value }, Carried)
end

-- err as an error object of primitive: an object stays itself (it is
-- given the primitive if it had none); a message becomes one, of `kind`
-- or of the kind its text says, positioned here.  A table an author
-- raised with error{}, and an error carried, are left as they were.
function errors.from(err, primitive, kind)
  if getmetatable(err) == Carried then return err.value end
  if errors.is(err) then
    if err.primitive == nil then err.primitive = primitive end
    return err
  end
  if type(err) == "table" then return err end
  err = tostring(err)
  if kind == nil or require("runbook.loop").interrupts() > 0 then kind = errors.classify(err) end
  return errors.new(kind, err, { primitive = primitive })
end

-- The text of err without its position: what a message quoting another
-- failure shows ("database unreachable: <message>").
function errors.message(err)
  if errors.is(err) then return err.message end
  return tostring(err)
end

-- The kind of any error value: an object's, "error" for the rest.
function errors.kind(err)
  if errors.is(err) then return err.kind end
  return "error"
end

return errors
