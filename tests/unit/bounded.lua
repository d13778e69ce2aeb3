-- runbook.bounded: run by lua5.4 with stdlib/ on package.path.
local SOURCE = assert(os.getenv("RB_SOURCE_DIR"), "RB_SOURCE_DIR not set")
package.path = SOURCE .. "/stdlib/?.lua;" .. package.path
local bounded = require("runbook.bounded")

local check = dofile(SOURCE .. "/tests/unit/lib/check.lua")
local test, eq = check.test, check.eq

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

test("keeps what was put, up to its bound", function()
  local c = bounded(3)
  c:put("a", 1)
  c:put("b", 2)
  c:put("c", 3)
  eq(c.items.a, 1, "a kept")
  eq(c.items.c, 3, "c kept")
  eq(count(c.items), 3, "three held")
end)

test("a put past the bound empties it first, so it never holds more", function()
  local c = bounded(3)
  for i = 1, 3 do c:put("k" .. i, i) end
  c:put("k4", 4)
  eq(c.items.k1, nil, "the old entries went")
  eq(c.items.k4, 4, "the new one is kept")
  eq(count(c.items), 1, "one held after emptying")
  for i = 1, 1000 do c:put("made-up" .. i, i) end
  assert(count(c.items) <= 3, "a thousand made-up keys stay within the bound")
end)

test("two caches are apart", function()
  local a, b = bounded(2), bounded(2)
  a:put("x", 1)
  eq(b.items.x, nil, "b does not see a's entry")
end)

check.finish()
