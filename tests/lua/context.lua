-- runbook.context (which run the running code belongs to) and
-- runbook.errors (what a failure is), through the binary.
runbook { name = "context-test", title = "run context and error objects", severity = "P3" }

local api = require("runbook.api")
local context = require("runbook.context")
local errors = require("runbook.errors")
local loop = require("runbook.loop")
local check = require("lib.check")
local debug = require("debug")
local eq, fail = check.eq, check.fail

local FILE = debug.getinfo(1, "S").short_src
local function line() return debug.getinfo(2, "l").currentline end

-- The run being declared: the one every step, branch and task must see.
local declared = context.run()

step("The run being declared is the run its steps see", function()
  if declared == nil then fail("no run while the runbook was declared") end
  eq(declared.plan.name, "context-test", "the declared run's plan")
  eq(context.run(), declared, "the step's run")
  eq(declared.phase, "execute", "the run's phase in a step")
end)

step("parallel branches, spawned tasks and an author's coroutine find the same run", function()
  local seen = parallel({ 1, 2, 3 }, function() loop.sleep(0.01); return context.run() end)
  for i = 1, 3 do eq(seen[i], declared, "branch " .. i) end
  local spawned
  loop.spawn(function() spawned = context.run() end)
  loop.join()
  eq(spawned, declared, "a spawned task")
  eq(coroutine.wrap(function() return context.run() end)(), declared, "a coroutine of the author's")
end)

step("A task bound to another run sees that run, and the step keeps its own", function()
  local other = { plan = { name = "other" } }
  local co = coroutine.create(function() coroutine.yield(context.run()); return context.run() end)
  context.bind(other, co)
  local _, first = coroutine.resume(co)
  eq(first, other, "the bound coroutine's run")
  eq(context.run(), declared, "the step's run while another task is bound elsewhere")
  local _, second = coroutine.resume(co)
  eq(second, other, "the bound coroutine's run after a yield")
end)

step("A primitive's error is an object: kind, primitive, where, message", function()
  local ok, err = pcall(function() exec { "sh", "-c", "exit 4" } end); local l = line()
  eq(ok, false, "pcall")
  eq(errors.is(err), true, "an error object")
  eq(err.kind, "failed", "kind")
  eq(err.primitive, "exec", "primitive")
  eq(err.code, 4, "code")
  eq(err.where, FILE .. ":" .. l, "where")
  eq(err.message, "exec sh: exited with code 4", "message")
  eq(tostring(err), FILE .. ":" .. l .. ": exec sh: exited with code 4", "tostring")
  eq("failed: " .. err, "failed: " .. tostring(err), "concatenation reads as the text")
  eq(errors.message(err), err.message, "errors.message")
end)

step("Each kind of misuse and failure says its kind", function()
  local cases = {
    { function() exec { "sleep", "5", timeout = 0.05 } end, "timeout", "exec" },
    { function() confirm("") end, "usage", "confirm" },
    { function() parallel("x", print) end, "usage", "parallel" },
    { function() poll(function() end, { every = 0.01, timeout = 0.02 }) end, "timeout", "poll" },
    { function() wait(-1) end, "usage", "wait" },
    { function() severity { level = "P9", action = "proposed" } end, "usage", "severity" },
    { function() http.get("not a url") end, "usage", "http" },
    { function() sql.connect(42) end, "usage", "sql" },
    { function() redis.connect("http://x") end, "usage", "redis" },
    { function() ssh.connect { } end, "usage", "ssh" },
  }
  for i, c in ipairs(cases) do
    local ok, err = pcall(c[1])
    if ok then fail("case %d: expected an error", i) end
    eq(errors.kind(err), c[2], "kind of case " .. i .. " (" .. tostring(err) .. ")")
    eq(err.primitive, c[3], "primitive of case " .. i)
    if not tostring(err):find(FILE .. ":", 1, true) then
      fail("case %d: expected the error to name %s, got %q", i, FILE, tostring(err))
    end
  end
end)

step("parallel's error has the branches' kind and each branch's error", function()
  local ok, err = pcall(parallel, { 1, 2 }, function(i) exec { "sh", "-c", "exit " .. i } end)
  eq(ok, false, "pcall")
  eq(err.kind, "failed", "kind when every branch failed alike")
  eq(err.errors[2].code, 2, "the second branch's error")
  ok, err = pcall(parallel, { 1, 2 }, function(i)
    if i == 1 then exec { "false" } else confirm("") end
  end)
  eq(err.kind, "error", "kind when the branches failed differently")
end)

step("A decline is an error of kind declined, shown as before", function()
  local d = errors.declined("Drain the node?", "confirm")
  eq(api.is_declined(d), true, "api.is_declined")
  eq(d.kind, "declined", "kind")
  eq(tostring(d), "declined: Drain the node?", "text, without a position")
  if d.where == nil then fail("a decline records where it was asked") end
end)

step("An error made where no frame is the runbook's has no position", function()
  local err = coroutine.wrap(errors.new)("error", "from the host")
  eq(err.where, nil, "where")
  eq(tostring(err), "from the host", "text")
end)

step("errors.from makes an object of a message, and leaves an object as it is", function()
  eq(errors.from("plain text", "x", "server").kind, "server", "a message given a kind")
  eq(errors.from("x: timed out after 1.0 s", "x").kind, "timeout", "a message's kind from its words")
  eq(errors.from("x: connection refused", "x").kind, "refused", "refused, from its words")
  local obj = errors.new("refused", "m", { primitive = "p" })
  eq(errors.from(obj, "q"), obj, "an object stays itself")
  eq(obj.primitive, "p", "and keeps its primitive")
  local raised = { "a table an author raised" }
  eq(errors.from(raised, "q"), raised, "a plain table stays as it is")
  eq(errors.from(errors.carry("fn's own"), "q"), "fn's own", "a carried error is handed on as raised")
end)
