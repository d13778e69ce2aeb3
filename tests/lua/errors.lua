-- Error messages name the runbook's own file:line, pcall lets a step branch
-- on a failure, and misuse is refused where it happens.
-- Run by tests/run_lua_test.py as a runbook with --yes; each step asserts.
runbook { name = "lua-errors", title = "errors and positions", severity = "P3" }
param("region", { default = "eu-west" })

local debug = require("debug")
local FILE = debug.getinfo(1, "S").short_src

local check = require("lib.check")
local fail, eq, err_of = check.fail, check.eq, check.err_of
local function at(line) return FILE .. ":" .. line .. ": " end
local function line() return debug.getinfo(2, "l").currentline end

step("pcall around a failing exec: the step branches and goes on", function()
  local ok, err = pcall(function() exec { "sh", "-c", "exit 9" } end); local l = line()
  eq(ok, false, "pcall")
  eq(tostring(err), at(l) .. "exec sh: exited with code 9", "error")
  eq(err.kind, "failed", "the error's kind")
  local r = exec { "sh", "-c", "exit 9", check = false }
  eq(r.code, 9, "the same command with check = false")
end)

step("errors from the primitives carry the calling line", function()
  local cases = {}
  local e, l
  e = err_of(function() exec { "rb-no-such-command" } end); l = line()
  cases[#cases + 1] = { e, l, "exec: cannot run 'rb-no-such-command'" }
  e = err_of(function() exec { "sleep", "5", timeout = 0.1 } end); l = line()
  cases[#cases + 1] = { e, l, "exec sleep: run timed out after 0.1 s" }
  e = err_of(function() parallel({ 1 }, function() error("inner", 0) end) end); l = line()
  cases[#cases + 1] = { e, l, "parallel: 1 of 1 failed: [1] inner" }
  e = err_of(function() poll(function() end, { every = 0.01, timeout = 0.03 }) end); l = line()
  cases[#cases + 1] = { e, l, "poll: condition still not true after" }
  e = err_of(function() confirm("") end); l = line()
  cases[#cases + 1] = { e, l, "confirm: the question must be a non-empty string" }
  e = err_of(function() choose("Which?", {}) end); l = line()
  cases[#cases + 1] = { e, l, "choose: expected a non-empty list of choices" }
  e = err_of(function() parallel("x", print) end); l = line()
  cases[#cases + 1] = { e, l, "parallel: expected a list of items" }
  for _, c in ipairs(cases) do
    local want = at(c[2]) .. c[3]
    if c[1]:sub(1, #want) ~= want then fail("expected the error to start with %q, got %q", want, c[1]) end
  end
end)

step("error() in a step carries its line", function()
  local e = err_of(function() error("plain failure") end); local l = line()
  eq(e, at(l) .. "plain failure", "error")
end)

step("declaring is refused inside a step", function()
  local e1 = err_of(function() step("late", function() end) end); local l1 = line()
  eq(e1, at(l1) .. "step: only at the top level of a runbook", "step")
  local e2 = err_of(function() param("late", {}) end); local l2 = line()
  eq(e2, at(l2) .. "param: only at the top level of a runbook", "param")
end)

step("params: declared ones read, undeclared ones and writes raise", function(p)
  eq(p.region, "eu-west", "p.region")
  local e1 = err_of(function() return p.regoin end); local l1 = line()
  eq(e1, at(l1) .. 'undeclared param "regoin" (declare it with param("regoin", {...}))', "p.regoin")
  local e2 = err_of(function() p.region = "us-east" end); local l2 = line()
  eq(e2, at(l2) .. 'params are read-only (tried to set "region")', "write")
end)

step("--yes answers confirm; other questions without an answer raise naming them", function()
  eq(confirm("Go ahead?"), true, "confirm under --yes")
  local e = err_of(function() yesno("Drain the node first?") end)
  assert(e:find('"Drain the node first?"', 1, true), "the question is not named: " .. e)
  assert(e:find("standard input is not a terminal", 1, true), e)
  eq(prompt("Batch size?", { default = "10" }), "10", "a default under --yes")
end)
