-- runbook new: write a commented skeleton runbook that passes check.
local cli = require("runbook.cli")
local sys = require("runbook.sys")
local ui = require("runbook.ui")

local M = {
  summary = "write a commented skeleton runbook",
  synopsis = "NAME",
  description = "Write runbooks/NAME.lua, a commented skeleton that passes 'runbook check'.",
  options = {
    { name = "dir", value = "DIR", help = "write into DIR instead of ./runbooks" },
    { name = "force", short = "f", help = "overwrite an existing file" },
  },
}

local SKELETON = [[
-- %s: what this runbook is for, in one line.
-- Run it with `runbook run %s`; rehearse it with `runbook run %s --dry-run`.

runbook {
  name = "%s",
  title = "Describe the incident this runbook handles",
  severity = "P2",            -- P0 outage ... P3 cosmetic
  description = "When to use it, and what it changes.",
}

-- Inputs: -p service=NAME on the command line, else the default.
param("service", { help = "the service to act on", default = "example" })

step("Look before touching anything", function(p)
  -- Read-only commands run even in --dry-run when marked readonly.
  local r = exec { "uname", "-a", readonly = true }
  log.info("host: %%s, service %%s", r.stdout:gsub("%%s+$", ""), p.service)
end)

step("Ask before the risky part", function(p)
  confirm("Go ahead with the change to " .. p.service .. "?")
end)

step("Make the change", { dangerous = true, timeout = 120 }, function(p)
  -- exec takes argv (no shell); sh("...") when you need one.
  exec { "true" }
end)
]]

function M.run(args)
  local name = args[1]
  if name == nil then return cli.fail(2, "new: which name? (runbook new NAME)") end
  if not name:match("^[%w][%w%-_]*$") then
    return cli.fail(2, "new: %q is not a valid name (letters, digits, '-', '_')", name)
  end
  local dir = args.dir or "runbooks"
  local path = dir .. "/" .. name .. ".lua"
  if cli.is_file(path) and not args.force then
    return cli.fail(2, "new: %s exists (use --force to overwrite)", path)
  end
  local ok, err = pcall(sys.mkdirs, dir, 493)   -- 0755
  if not ok then return cli.fail(2, "new: %s", tostring(err)) end
  local f, ferr = io.open(path, "w")
  if not f then return cli.fail(2, "new: cannot write %s: %s", path, ferr) end
  f:write(string.format(SKELETON, name, name, name, name))
  f:close()
  ui.print("wrote " .. path .. "; check it with: runbook check " .. path)
  return 0
end

return M
