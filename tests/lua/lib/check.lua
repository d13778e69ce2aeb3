-- Assertions shared by tests/lua/*.lua (require("lib.check")): a failure
-- says what was expected and what was seen, at the line of the check.
local check = {}

function check.fail(fmt, ...)
  error(string.format(fmt, ...), 3)
end

function check.eq(got, want, what)
  if got ~= want then check.fail("%s: expected %q, got %q", what, tostring(want), tostring(got)) end
end

function check.has(s, part, what)
  if not tostring(s):find(part, 1, true) then
    check.fail("%s: expected %q in %q", what, part, tostring(s))
  end
end

-- The error of f(), which must fail.
function check.err_of(f)
  local ok, err = pcall(f)
  if ok then check.fail("expected an error, the call succeeded") end
  return tostring(err)
end

return check
