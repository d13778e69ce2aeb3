-- runbook.roomcmd: what the room's commands (runs, watch, approve,
-- update) share: their common options, and the store from --config and
-- --target, or exit 2 when no room is configured.
local config = require("runbook.config")
local room = require("runbook.room")

local M = {}

M.OPTIONS = {
  { name = "config", value = "FILE", help = "config file (default $XDG_CONFIG_HOME/runbook/config.lua)" },
  { name = "target", short = "t", value = "NAME", help = "use the room of target NAME" },
}

-- The room's spec, or nil and the message for exit 2.
function M.spec(args)
  local cfg, err = config.load(args.config)
  if not cfg then return nil, err end
  local target
  if args.target then
    target, err = config.target(cfg, args.target)
    if not target then return nil, err end
  end
  local spec, serr = room.spec(cfg, target)
  if serr then return nil, serr end
  if not spec then
    return nil, string.format("no room is configured: add room = { backend = \"postgres\" | \"redis\", " ..
      "url = env(\"RUNBOOK_ROOM_URL\") } to %s (docs/room.md)", cfg.path or config.default_path())
  end
  return spec
end

-- The store, connected; or nil, exit code, message.
function M.store(args)
  local spec, err = M.spec(args)
  if not spec then return nil, 2, err end
  local ok, store = pcall(room.connect, spec)
  if not ok then return nil, 1, tostring(store) end
  return store
end

return M
