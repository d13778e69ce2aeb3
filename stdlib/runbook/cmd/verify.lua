-- runbook verify: check a transcript's hash chain (src/transcript.c).
local cli = require("runbook.cli")
local jsonout = require("runbook.jsonout")
local transcript = require("runbook.transcript")
local ui = require("runbook.ui")

local M = {
  summary = "check a transcript's hash chain",
  synopsis = "TRANSCRIPT",
  description = "Check a transcript's hash chain. Exit 0 when every line verifies; otherwise\n" ..
    "exit 1 and name the first bad line.",
  options = {
    { name = "expect-hash", value = "HEX", help = "also require the last line to have this hash" },
    { name = "json", help = "print the result as one JSON object, for scripts (docs/json.md)" },
  },
}

-- --expect-hash given and not the last line's: say what the file holds
-- instead, since "missing lines" and "lines added after" need different
-- follow-ups in an incident.
local function expect_mismatch(path, res, want)
  if res.expect_line then
    local after = res.lines - res.expect_line
    return string.format("%s: the expected hash is line %d's of %d: %d line(s) after the expected " ..
      "final hash (added after it was taken); the last line's hash is %s", path, res.expect_line,
      res.lines, after, res.last_hash)
  end
  return string.format("%s: no line has the expected hash %s: lines are missing at the end, or this " ..
    "is another run's transcript (%d lines, last hash %s)", path, want, res.lines, res.last_hash)
end

-- The result as `verify --json` gives it; the exit code is the same as
-- without --json, and the words printed without it are `reason`.
local function json_result(path, ok, res, want)
  local out = { file = path, ok = ok, lines = res.lines, last_hash = res.last_hash,
    ended = ok and res.ended and true or false, bad_line = not ok and res.bad_line or nil,
    reason = not ok and res.reason or nil, expect_hash = want }
  if ok and want and want ~= res.last_hash then
    out.ok, out.expect_line = false, res.expect_line
    out.reason = expect_mismatch(path, res, want)
  end
  return out
end

function M.run(args)
  local path = args[1]
  if path == nil then return cli.fail(2, "verify: which transcript? (runbook verify FILE)") end
  if args[2] ~= nil then return cli.fail(2, "verify: one transcript at a time (got %q too)", args[2]) end
  local want = args["expect-hash"]
  if want ~= nil then
    want = want:lower()
    if not want:match("^" .. string.rep("%x", 64) .. "$") then
      return cli.fail(2, "verify: --expect-hash: expected the 64 hex digits of a final hash, got %q", args["expect-hash"])
    end
  end
  local ok, res = transcript.verify(path, { expect = want })
  if ok == nil then return cli.fail(2, "verify: %s", res.reason or ("cannot read " .. path)) end
  if args.json then
    local out = json_result(path, ok, res, want)
    jsonout.print(out)
    return out.ok and 0 or 1
  end
  if not ok then
    if res.bad_line == 0 then
      ui.eprint(string.format("%s: %s", path, res.reason))
      return 1
    end
    ui.eprint(string.format("%s:%d: %s", path, res.bad_line, res.reason))
    if res.lines > 0 then
      ui.eprint(string.format("%d line(s) before it verify; last good hash %s", res.lines, res.last_hash))
    end
    return 1
  end
  if want and want ~= res.last_hash then
    ui.eprint(expect_mismatch(path, res, want))
    return 1
  end
  ui.print(string.format("ok: %s: %d lines, hash chain intact", path, res.lines))
  ui.print("final hash: " .. res.last_hash)
  if not res.ended then
    ui.print("note: no run.end event: the run did not finish (killed, or still running)")
  end
  return 0
end

return M
