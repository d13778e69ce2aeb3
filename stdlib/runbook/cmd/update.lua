-- runbook update: post a status update to a running run from any machine;
-- the run sends it through notify and records it (runbook.approval).
local cli = require("runbook.cli")
local inbox = require("runbook.room_inbox")
local roomcmd = require("runbook.roomcmd")
local ui = require("runbook.ui")

local M = {
  summary = "post a status update to a running run",
  synopsis = "RUN -m TEXT [options]",
  description = "Post a status update to a run through the incident room (the config's\n" ..
    "`room`). The running process picks it up at its next step boundary, or while it\n" ..
    "waits for an approval, sends it through notify and records it with the\n" ..
    "identity the store authenticated. RUN is a run id or a unique prefix.\n" ..
    "Exit 0 sent, 1 the room or the run said no (unknown, ended), 2 usage.",
  options = {
    { name = "message", short = "m", value = "TEXT", help = "the update (required)" },
    roomcmd.OPTIONS[1], roomcmd.OPTIONS[2],
  },
}

local ENDED = { done = true, failed = true, aborted = true, terminated = true, interrupted = true }

function M.run(args)
  if args.message == nil or args.message == "" then return cli.fail(2, "update: -m TEXT is required") end
  local store, row, msg = inbox.reach(args, "update")
  if not store then return cli.fail(row, "%s", msg) end
  if ENDED[row.state] then
    store:close()
    return cli.fail(1, "update: run %s has ended (%s): no process is there to send it", row.run, row.state)
  end
  local ok, id, who = pcall(store.post, store, row.run, "update", inbox.body(args.message))
  store:close()
  if not ok then return cli.fail(1, "update: %s", tostring(id)) end
  ui.print(string.format("update for run %s sent as %s (message %s on %s): %s", row.run, who, tostring(id),
    store.shown, args.message))
  return 0
end

return M
