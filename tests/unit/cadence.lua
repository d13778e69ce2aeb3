-- runbook.duration, runbook.templates and the schedule of runbook.cadence:
-- run by lua5.4 with stdlib/ on package.path (tests/CMakeLists.txt).  The
-- host's C modules cadence needs (the loop's clock, the operator's name)
-- are replaced by stand-ins: a clock the test moves by hand.
local SOURCE = assert(os.getenv("RB_SOURCE_DIR"), "RB_SOURCE_DIR not set")
package.path = SOURCE .. "/stdlib/?.lua;" .. package.path

local clock = 1000
package.loaded["runbook.loop"] = { now = function() return clock end }
package.loaded["runbook.operator"] = { username = function() return "ana" end,
  hostname = function() return "ops1" end }
package.loaded["runbook.ui"] = {}
local duration = require("runbook.duration")
local templates = require("runbook.templates")
local cadence = require("runbook.cadence")

local check = dofile(SOURCE .. "/tests/unit/lib/check.lua")
local test, eq = check.test, check.eq

test("durations in seconds, minutes, hours, days and plain seconds", function()
  eq(duration.parse("90s"), 90, "90s")
  eq(duration.parse("15m"), 900, "15m")
  eq(duration.parse("4h"), 14400, "4h")
  eq(duration.parse("1d"), 86400, "1d")
  eq(duration.parse(" 2 "), 2, "a string of seconds")
  eq(duration.parse(3), 3, "a number")
  eq(duration.parse(0.5), 0.5, "half a second")
  eq(duration.parse("1.5m"), 90, "1.5m")
end)

test("a duration that is not one says what is expected", function()
  for _, bad in ipairs({ "15 minutes", "m", "", "-5s", "1e3", "4H" }) do
    local v, why = duration.parse(bad)
    eq(v, nil, "parse " .. bad)
    assert(why:find("not a duration", 1, true), "why for " .. bad .. ": " .. tostring(why))
  end
  local v, why = duration.parse(0)
  eq(v, nil, "zero")
  assert(why:find("more than 0", 1, true), why)
  eq(duration.parse(-1), nil, "negative")
  eq(duration.parse(1 / 0), nil, "infinite")
  eq(duration.parse({}), nil, "a table")
end)

test("durations are written back short", function()
  eq(duration.text(2), "2s", "2")
  eq(duration.text(90), "90s", "90")
  eq(duration.text(900), "15m", "900")
  eq(duration.text(5400), "1h30m", "5400")
  eq(duration.text(14400), "4h", "4h")
  eq(duration.text(86400 + 60), "1d1m", "1d1m")
end)

test("a table by severity merges over its defaults and names what is wrong", function()
  local t = assert(duration.by_level({ P1 = "10m", P3 = 60 }, cadence.DEFAULTS, "cadence"))
  eq(t.P0, 900, "P0 default")
  eq(t.P1, 600, "P1 given")
  eq(t.P2, 14400, "P2 default")
  eq(t.P3, 60, "P3 given")
  local v, err = duration.by_level({ P1 = "soon" }, cadence.DEFAULTS, "cadence")
  eq(v, nil, "bad value")
  assert(err:find("cadence.P1:", 1, true) and err:find('"soon"', 1, true), err)
  v, err = duration.by_level({ SEV1 = "5m" }, cadence.DEFAULTS, "respond")
  eq(v, nil, "bad level")
  assert(err:find("respond.SEV1: not a severity", 1, true), err)
  v, err = duration.by_level("15m", cadence.DEFAULTS, "cadence")
  assert(v == nil and err:find("expected a table", 1, true), tostring(err))
end)

test("fill replaces known placeholders and lists the unknown ones once, in order", function()
  local out, missing = templates.fill("[Service Name] is [Status]; [Lead] leads; ask [Lead] or [Pager Rota].",
    { ["Service Name"] = "api", Status = "degraded" })
  eq(out, "api is degraded; [Lead] leads; ask [Lead] or [Pager Rota].", "text")
  eq(#missing, 2, "missing count")
  eq(missing[1], "Lead", "first missing")
  eq(missing[2], "Pager Rota", "second missing")
end)

test("fill matches names ignoring case, blanks, - and _", function()
  local out, missing = templates.fill("[service name] / [SERVICE_NAME] / [Service-Name]", { ["Service Name"] = "db" })
  eq(out, "db / db / db", "loose names")
  eq(#missing, 0, "nothing missing")
end)

test("fill leaves links, checkboxes and values with % as they are", function()
  local out, missing = templates.fill("- [ ] [x] see [the docs](http://x) for [Step]", { Step = "100% done %1" })
  eq(out, "- [ ] [x] see [the docs](http://x) for 100% done %1", "text")
  eq(#missing, 0, "a link text and a checkbox are no placeholders")
end)

test("fill joins a list and keeps a false value's field visible", function()
  local out, missing = templates.fill("[Done] [Gone]", { Done = { "a", "b" }, Gone = false })
  eq(out, "a; b [Gone]", "text")
  eq(missing[1], "Gone", "false is not a value")
end)

test("a template comes from the runbook, then the config, then the defaults", function()
  local run = { plan = { header = { templates = { update = "rb [Status]" } } },
    config = { templates = { update = "cfg", alert = "cfg alert" } } }
  eq(templates.get(run, "update"), "rb [Status]", "runbook's")
  eq(templates.get(run, "alert"), "cfg alert", "config's")
  eq(templates.get(run, "resolved"), templates.DEFAULTS.resolved, "default")
end)

test("replacements that cannot be used are named when they are read", function()
  eq(templates.check(nil, "templates"), nil, "none")
  eq(templates.check({ update = "x [Status]" }, "templates"), nil, "a good one")
  local why = templates.check({ update = 5 }, "templates")
  assert(why and why:find("templates.update: expected the message text", 1, true), tostring(why))
  why = templates.check({ updates = "x" }, "runbook{}: templates")
  assert(why and why:find("runbook{}: templates.updates: no such message", 1, true), tostring(why))
  why = templates.check({ alert = "  " }, "templates")
  assert(why and why:find("templates.alert", 1, true), tostring(why))
  why = templates.check("x", "templates")
  assert(why and why:find("expected a table", 1, true), tostring(why))
end)

test("every default template is filled by the values a run gives", function()
  local values = { ["Service Name"] = 1, Severity = 1, Status = 1, ["Since Last Update"] = 1, ["Next Step"] = 1,
    Duration = 1, Lead = 1, Runbook = 1, Target = 1, Started = 1, Cadence = 1, Summary = 1,
    Waited = 1, ["Waiting On"] = 1, Respond = 1, Question = 1, Step = 1 }
  for kind, text in pairs(templates.DEFAULTS) do
    local _, missing = templates.fill(text, values)
    eq(#missing, 0, kind .. " leaves " .. table.concat(missing, ", "))
  end
end)

-- A run as far as the schedule needs: its config, header and clock state.
local function run_at(level, cfg)
  local run = { config = { cadence = assert(duration.by_level(cfg, cadence.DEFAULTS, "cadence")) },
    plan = { header = { severity = level }, steps = {} } }
  run.cadence = { last = clock, started = clock }
  return run
end

test("an update falls due one cadence after the last one", function()
  local run = run_at("P1", { P1 = "30m" })
  local level, wait = cadence.due(run)
  eq(level, nil, "not due at once")
  eq(wait, 1800, "due in 30m")
  clock = clock + 1799
  eq((cadence.due(run)), nil, "not due a second early")
  clock = clock + 1
  local lvl, interval = cadence.due(run)
  eq(lvl, "P1", "due at 30m")
  eq(interval, 1800, "its interval")
end)

test("a snooze puts the update off; a raised severity brings it closer", function()
  local run = run_at("P2", nil)
  eq(select(2, cadence.due(run)), 14400, "P2 every 4h by default")
  run.severity = "P0"
  eq(select(2, cadence.due(run)), 900, "P0 every 15m from the same last update")
  clock = clock + 900
  eq((cadence.due(run)), "P0", "due")
  run.cadence.snoozed_until = clock + 120
  eq(select(2, cadence.due(run)), 120, "snoozed for 2m")
  clock = clock + 120
  eq((cadence.due(run)), "P0", "due again after the snooze")
end)

test("no severity, or P3, has no cadence", function()
  eq((cadence.due(run_at(nil, nil))), nil, "no severity")
  eq(select(2, cadence.due(run_at(nil, nil))), nil, "and no wait")
  eq(select(2, cadence.due(run_at("P3", nil))), nil, "P3 by default")
  eq(select(2, cadence.due(run_at("P3", { P3 = "1d" }))), 86400, "P3 when the config gives one")
end)

check.finish()
