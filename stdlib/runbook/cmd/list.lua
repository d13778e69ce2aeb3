-- runbook list: the runbooks found where NAME is looked up.
local cli = require("runbook.cli")
local sys = require("runbook.sys")
local ui = require("runbook.ui")

local M = {
  summary = "list the runbooks that can be run",
  synopsis = "",
  description = "List the runbooks found in ./runbooks, $RUNBOOK_PATH and the installed share dir.",
}

function M.run(args)
  if args[1] ~= nil then return cli.fail(2, "list: takes no arguments") end
  local seen, rows = {}, {}
  for _, dir in ipairs(cli.search_dirs()) do
    for _, f in ipairs(sys.listdir(dir) or {}) do
      local name = f:match("^(.+)%.lua$") or f:match("^(.+)%.md$")    -- Lua or a markdown checklist
      if name and not seen[name] then
        seen[name] = true
        local run, plan = cli.load_plan(dir .. "/" .. f)
        if run then
          rows[#rows + 1] = { name, plan.header.severity or "-", plan.header.title or "", dir }
        else
          rows[#rows + 1] = { name, "?", "(" .. plan .. ")", dir }
        end
      end
    end
  end
  if #rows == 0 then
    ui.print("no runbooks found in " .. table.concat(cli.search_dirs(), ", "))
    return 0
  end
  ui.print(ui.style("bold", string.format("%-20s %-4s %s", "NAME", "SEV", "TITLE")))
  for _, r in ipairs(rows) do
    ui.print(string.format("%-20s %-4s %s %s", r[1], r[2], r[3], ui.style("dim", "(" .. r[4] .. ")")))
  end
  return 0
end

return M
