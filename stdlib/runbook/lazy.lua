-- runbook.lazy: a module loaded on first use.
--
-- The network primitives (http, sql, redis, ssh) are shared objects that
-- pull in libcurl, libpq, libssh2 and hiredis with their own dependencies:
-- mapping those costs about 5 ms at every start.  Their Lua wrappers hold
-- a proxy from here instead, so a run (or `list`, `show`, `verify`) that
-- never calls them never loads them.  runbook.cadence holds one for the
-- Lua modules a run needs only when it sends a message or waits on a
-- question (runbook.templates, runbook.escalation).
return function(name)
  local proxy = {}
  return setmetatable(proxy, {
    __index = function(_, key)
      local mod = require(name)
      setmetatable(proxy, { __index = mod })   -- from now on, a plain lookup
      return mod[key]
    end,
  })
end
