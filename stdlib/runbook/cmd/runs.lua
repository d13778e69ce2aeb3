-- runbook runs: the team's active and recent runs, from the room's store.
local cli = require("runbook.cli")
local jsonout = require("runbook.jsonout")
local roomcmd = require("runbook.roomcmd")
local ui = require("runbook.ui")

local M = {
  summary = "list the team's active and recent runs (the room)",
  synopsis = "[--json] [--config FILE] [--target NAME]",
  description = "List the runs the room's store knows, the most recently updated first:\n" ..
    "run id, runbook, target, operator@host (the identity the store authenticated),\n" ..
    "when it started, its current step, its state (running, waiting for approval,\n" ..
    "waiting for the operator, done, failed, aborted, terminated) and its last update.\n" ..
    "A run whose publisher stopped beating without a run.end is shown terminated.",
  options = {
    { name = "json", help = "print a JSON array, for scripts (docs/json.md)" },
    { name = "limit", value = "N", help = "at most N runs (default 50)" },
    roomcmd.OPTIONS[1], roomcmd.OPTIONS[2],
  },
}

local FINAL = { done = true, failed = true, aborted = true, terminated = true }
M.LATE_BEATS = 3       -- heartbeats missed before a run counts as terminated

-- The state to show: the run's own, unless its publisher fell silent.
function M.state(r)
  local beat = tonumber(r.beat) or 5
  if not FINAL[r.state] and r.alive_age and r.alive_age > M.LATE_BEATS * beat then
    return "terminated"
  end
  return r.state or "running"
end

local function when(unix)
  return unix and os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(unix)) or ""
end

local function plain(r)
  return { run = r.run, runbook = r.runbook, target = r.target, operator = r.operator, host = r.host,
    identity = r.identity, started = r.started, step = r.step, state = M.state(r),
    updated = when(r.updated) }
end

local function who(r)
  return string.format("%s@%s (%s)", r.operator or "?", r.host or "?", r.identity or "?")
end

local function table_out(rows)
  if #rows == 0 then
    ui.print("no runs in the room yet")
    return
  end
  local fmt = "%-25s  %-16s  %-10s  %-30s  %-20s  %-24s  %-24s  %s"
  ui.print(ui.style("bold", string.format(fmt, "RUN", "RUNBOOK", "TARGET", "OPERATOR@HOST (IDENTITY)",
    "STARTED", "STEP", "STATE", "UPDATED")))
  for _, r in ipairs(rows) do
    ui.print(string.format(fmt, r.run, r.runbook or "", r.target or "", who(r), r.started or "",
      r.step or "", r.state, r.updated))
  end
end

function M.run(args)
  if args[1] ~= nil then return cli.fail(2, "runs: takes no arguments (got %q)", args[1]) end
  local limit = tonumber(args.limit or "50")
  if not limit or limit < 1 or limit ~= math.floor(limit) then
    return cli.fail(2, "--limit: expected a positive whole number, got %q", tostring(args.limit))
  end
  local store, code, err = roomcmd.store(args)
  if not store then return cli.fail(code, "%s", err) end
  local ok, runs = pcall(store.runs, store, limit)
  store:close()
  if not ok then return cli.fail(1, "%s", tostring(runs)) end
  local rows = {}
  for i, r in ipairs(runs) do rows[i] = plain(r) end
  if args.json then
    jsonout.print(jsonout.array(rows))      -- written as list, show, check, verify write theirs
  else
    table_out(rows)
  end
  return 0
end

return M
