-- runbook.fanout: which items of a run's fan-outs --retry-failed runs
-- again, from transcript events as record.read gives them (numbers as
-- floats, as cjson decodes them); run by lua5.4 with stdlib/ on
-- package.path (tests/CMakeLists.txt).
local SOURCE = assert(os.getenv("RB_SOURCE_DIR"), "RB_SOURCE_DIR not set")
package.path = SOURCE .. "/stdlib/?.lua;" .. package.path
local fanout = require("runbook.fanout")

local check = dofile(SOURCE .. "/tests/unit/lib/check.lua")
local test, eq = check.test, check.eq

local function start(id, index) return { event = "step.start", id = id, index = index + 0.0 } end
local function fan(step, k, n, failed, untried)
  return { event = "fanout", step = step, fanout = k + 0.0, items = n + 0.0, failed = failed, untried = untried }
end
local function keys(t)
  local out = {}
  for k, v in pairs(t) do out[#out + 1] = string.format("%d=%s", k, tostring(v)) end
  table.sort(out)
  return table.concat(out, " ")
end
local function raises(f, pattern, what)
  local ok, err = pcall(f)
  eq(ok, false, what .. " raises")
  if not tostring(err):find(pattern, 1, true) then
    error(string.format("%s: expected an error with %q, got %q", what, pattern, tostring(err)), 2)
  end
end

test("failed and untried items of a step's fan-outs are selected, by index, with their names", function()
  local sel = fanout.selection({
    start("prepare", 1), fan("prepare", 1, 3),
    start("hosts", 2),
    fan("hosts", 1, 5, { { i = 2.0, item = "web2", kind = "refused" } }, { { i = 4.0, item = "web4" }, { i = 5.0 } }),
    fan("hosts", 2, 2),
  })
  eq(#sel, 1, "one step with items to retry")
  eq(sel[1].id, "hosts", "its id")
  eq(sel[1].count, 3, "three items")
  eq(keys(sel[1].fanouts[1].todo), "2=web2 4=web4 5=false", "fan-out 1: failed and untried; an unnamed one by index")
  eq(keys(sel[1].fanouts[2].todo), "", "fan-out 2 of the step had nothing failed: nothing to run")
  eq(math.type(sel[1].fanouts[1].items), "integer", "the count comes back an integer")
end)

test("only a step's last attempt counts: an item that failed then passed on retry is not selected", function()
  local sel = fanout.selection({
    start("hosts", 1), fan("hosts", 1, 3, { { i = 1.0, item = "a" } }),
    start("hosts", 1), fan("hosts", 1, 3),
  })
  eq(#sel, 0, "nothing left")
  sel = fanout.selection({
    start("hosts", 1), fan("hosts", 1, 3),
    start("hosts", 1), fan("hosts", 1, 3, nil, { { i = 3.0, item = "c" } }),
  })
  eq(keys(sel[1].fanouts[1].todo), "3=c", "the last attempt's untried item")
end)

test("steps come in plan order; a run with no fan-out failures selects nothing", function()
  local sel = fanout.selection({
    start("b", 2), fan("b", 1, 1, { { i = 1.0, item = "x" } }),
    start("a", 1), fan("a", 1, 1, { { i = 1.0, item = "y" } }),
  })
  eq(sel[1].id .. sel[2].id, "ab", "by step index")
  eq(#fanout.selection({ start("a", 1), { event = "step.end", id = "a" } }), 0, "no fanout events")
  eq(fanout.step_of(sel, "b"), sel[2], "step_of finds a step")
  eq(fanout.step_of(sel, "c"), nil, "and not one that is not there")
end)

test("a retry runs only the selected items; a fan-out never reached runs whole", function()
  local sel = fanout.selection({
    start("s", 1), fan("s", 1, 4, { { i = 2.0, item = "h2" } }, { { i = 4.0, item = "h4" } }),
  })
  local items = { "h1", "h2", "h3", "h4" }
  eq(table.concat(fanout.indices(sel[1], 1, items), ","), "2,4", "the failed and the untried")
  eq(fanout.indices(sel[1], 2, items), nil, "fan-out 2 was never reached: all of it")
  eq(fanout.indices(nil, 1, items), nil, "a step with nothing to retry: all of it")
end)

test("a list that changed is refused, not guessed", function()
  local sel = fanout.selection({ start("s", 1), fan("s", 1, 3, { { i = 2.0, item = "h2" } }) })
  raises(function() fanout.indices(sel[1], 1, { "h1", "h2" }) end, "has 2 items now, 3 in the run retried",
    "another count")
  raises(function() fanout.indices(sel[1], 1, { "h1", "hX", "h3" }) end,
    'item 2 of fan-out 1 of step "s" is hX now, h2 in the run retried', "another item where one failed")
  eq(#fanout.indices(sel[1], 1, { "h0", "h2", "h9" }), 1, "items that ended ok may be renamed")
end)

test("items are named by their value, or a table by its host (and port), name or id", function()
  eq(fanout.label("web1"), "web1", "a string")
  eq(fanout.label(7), "7", "a number")
  eq(fanout.label({ host = "10.0.0.1", port = 2222 }), "10.0.0.1:2222", "host and port")
  eq(fanout.label({ name = "db" }), "db", "name")
  eq(fanout.label({ 1, 2 }), nil, "no name")
  eq(#fanout.label(string.rep("x", 500)), 200, "cut at 200 bytes")
end)

test("the outcome lists failed (errors and results that say so) and untried items, counts the rest", function()
  local items = { "a", "b", "c", "d", "e" }
  local kind = function(e) return e.kind end
  local results = { 1, nil, { ok = false, kind = "failed" }, nil, nil }
  local errs = { nil, { kind = "refused" }, nil, { kind = "untried" }, nil }
  local ev = fanout.outcome(items, results, errs, { 1, 2, 3, 4, 5 },
    function(r) return type(r) == "table" and r.ok == false end, kind)
  eq(ev.items, 5, "items")
  eq(ev.ok, 2, "ok: a, and e (ran, returned nothing)")
  eq(#ev.failed, 2, "two failed")
  eq(ev.failed[1].item .. ev.failed[1].kind .. ev.failed[2].item .. ev.failed[2].kind, "brefusedcfailed", "b and c")
  eq(ev.untried[1].i, 4, "d untried")
  ev = fanout.outcome(items, {}, {}, { 2 }, nil, kind)
  eq(ev.ok .. tostring(ev.failed) .. tostring(ev.untried), "1nilnil", "only the items ran are counted")
end)

check.finish()
