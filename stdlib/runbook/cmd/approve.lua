-- runbook approve: approve (or reject) a run that waits for a second
-- person's approval, from any machine, under the room store's own
-- authenticated identity (runbook.approval, docs/room-approvals.md).
local cli = require("runbook.cli")
local inbox = require("runbook.room_inbox")
local roomcmd = require("runbook.roomcmd")
local ui = require("runbook.ui")

local M = {
  summary = "approve or reject a run waiting for a second person",
  synopsis = "RUN [-m TEXT] [--reject -m TEXT] [options]",
  description = "Approve (or with --reject, reject) the approval a run is waiting for. RUN is\n" ..
    "a run id or a unique prefix of one, as the run prints it. The message is written\n" ..
    "to the incident room (the config's `room`) under the identity the store\n" ..
    "authenticates: the run refuses an approval from its own operator's identity.\n" ..
    "Exit 0 sent, 1 the room or the run said no (unknown, not waiting), 2 usage.",
  options = {
    { name = "message", short = "m", value = "TEXT", help = "your words, shown to the operator and recorded" },
    { name = "reject", help = "reject instead of approving (needs -m TEXT: say why)" },
    roomcmd.OPTIONS[1], roomcmd.OPTIONS[2],
  },
}

function M.run(args)
  if args.reject and (args.message == nil or args.message == "") then
    return cli.fail(2, "approve: --reject needs -m TEXT saying why")
  end
  local store, row, msg = inbox.reach(args, "approve")
  if not store then return cli.fail(row, "%s", msg) end
  if row.state ~= "waiting for approval" then
    store:close()
    return cli.fail(1, "approve: run %s is not waiting for an approval (its state: %s)", row.run,
      tostring(row.state or "unknown"))
  end
  local okw, me = pcall(store.whoami, store)
  if okw and row.identity == me then
    store:close()
    return cli.fail(1, "approve: you are %s, the identity run %s itself uses in the room: the operator " ..
      "cannot approve their own run (ask another person; nothing was sent)", me, row.run)
  end
  local kind = args.reject and "reject" or "approve"
  local ok, id, who = pcall(store.post, store, row.run, kind, inbox.body(args.message))
  store:close()
  if not ok then return cli.fail(1, "approve: %s", tostring(id)) end
  ui.print(string.format("%s run %s as %s (message %s on %s)%s", args.reject and "rejected" or "approved",
    row.run, who, tostring(id), store.shown, args.message and (': "' .. args.message .. '"') or ""))
  return 0
end

return M
