-- json.encode/decode, env(), secret(), log and print in a runbook.
-- Run by tests/run_lua_test.py as a runbook with --yes; each step asserts.
runbook { name = "lua-helpers", title = "json, env, secret", severity = "P3" }

local check = require("lib.check")
local fail, eq = check.fail, check.eq

-- Deep equality for decoded JSON.
local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

step("json round-trips tables, arrays, strings and numbers", function()
  local value = { name = "db-7", ports = { 5432, 6432 }, ok = true, ratio = 0.25,
    nested = { deep = { list = { "a", "b" } } }, text = "quote \" backslash \\ newline \n tab \t é ✓" }
  local text = json.encode(value)
  assert(type(text) == "string" and text:sub(1, 1) == "{", "encode gave " .. tostring(text))
  assert(same(json.decode(text), value), "decode(encode(v)) differs: " .. text)
  eq(json.encode({ 1, 2, 3 }), "[1,2,3]", "array")
  eq(json.decode('{"n":null}').n, json.null, "null")
  eq(json.decode("[10, 20]")[2], 20, "decoded array")
end)

step("json reads what a program prints", function()
  local r = exec { "printf", '{"status":"ok","replicas":[{"lag":0},{"lag":12}]}' }
  local doc = json.decode(r.stdout)
  eq(doc.status, "ok", "status")
  eq(doc.replicas[2].lag, 12, "lag")
end)

step("json.decode of bad text raises", function()
  local ok, err = pcall(json.decode, "{not json")
  eq(ok, false, "pcall result")
  assert(tostring(err):find("Expected", 1, true) or tostring(err):find("json", 1, true),
    "unexpected message: " .. tostring(err))
end)

step("env returns a variable, or the default when unset or empty", function()
  eq(env("HOME"), os.getenv("HOME"), "HOME")
  eq(env("RB_TEST_SURELY_UNSET_VAR"), nil, "unset")
  eq(env("RB_TEST_SURELY_UNSET_VAR", "fallback"), "fallback", "default")
  local ok, err = pcall(function() return env(42) end)
  eq(ok, false, "env(42)")
  assert(tostring(err):find("env: expected a variable name", 1, true), tostring(err))
end)

step("secret returns the value itself, usable by the step", function()
  local s = secret("s3cr3t-value-for-test")
  eq(s, "s3cr3t-value-for-test", "value")
  eq(#s, 21, "length")
  eq(exec { "printf", "%s", s }.stdout, "s3cr3t-value-for-test", "passed to a program")
end)

step("log and print take format arguments", function()
  log.info("%s has %d replicas", "db", 2)
  log.warn("plain text with a %% sign")
  print("print", 1, true)
end)
