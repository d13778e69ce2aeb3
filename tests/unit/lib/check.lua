-- The pure-Lua unit tests' few words (tests/unit/*.lua):
--   local t = dofile(SOURCE .. "/tests/unit/lib/check.lua")
--   t.test("name", function() t.eq(got, want, "what") end)
--   t.finish()      -- prints the counts; exit 1 when any failed
local M = { failures = 0, passed = 0 }

function M.test(name, fn)
  local ok, err = pcall(fn)
  if ok then M.passed = M.passed + 1 else M.failures = M.failures + 1; print("FAIL " .. name .. ": " .. tostring(err)) end
end

function M.eq(got, want, what)
  if got ~= want then error(string.format("%s: expected %q, got %q", what, tostring(want), tostring(got)), 2) end
end

function M.finish()
  print(string.format("%d passed, %d failed", M.passed, M.failures))
  os.exit(M.failures == 0 and 0 or 1)
end

return M
