-- runbook.context: which run the running code belongs to.
--
-- The primitives' methods are defined once per module, not once per run:
-- a method reaches its run through its object (each handle keeps the run
-- that made it), and a verb called by a runbook (sql.connect, confirm,
-- exec) asks context.run().  That is the run of the running task: the
-- engine binds each step's task to its run, a `parallel` branch is bound
-- to the run of the task that started it, and code outside any bound task
-- (the declaration of a runbook, a REPL evaluation, a coroutine an author
-- made) gets the run that was entered last: engine.new_run enters every
-- run it makes, and the REPL's run is the one it made.
local context = {}

local by_thread = setmetatable({}, { __mode = "k" })
local current = nil

-- Make run the one code outside a bound task belongs to; returns the run
-- it replaces.
function context.enter(run)
  local previous = current
  current = run
  return previous
end

-- Bind a task (a thread; default: the running one) to run.
function context.bind(run, thread)
  by_thread[thread or coroutine.running()] = run
end

-- The run of the running code, or nil when no run was entered.
function context.run()
  return by_thread[coroutine.running()] or current
end

-- The run, or a usage error naming the verb that needs one.
function context.need(verb)
  local run = context.run()
  if run == nil then
    require("runbook.errors").usage(verb .. ": no run is under way (call it from a runbook or the REPL)", verb)
  end
  return run
end

return context
