-- runbook list: the runbooks found where NAME is looked up.
local cli = require("runbook.cli")
local jsonout = require("runbook.jsonout")
local sys = require("runbook.sys")
local ui = require("runbook.ui")

local M = {
  summary = "list the runbooks that can be run",
  synopsis = "",
  description = "List the runbooks found in ./runbooks, $RUNBOOK_PATH and the installed share dir.",
  options = {
    { name = "json", help = "print a JSON array, for scripts (docs/json.md)" },
  },
}

-- One runbook as `list --json` gives it: what a script needs to pick one.
local function json_row(r)
  return { name = r[1], severity = r.severity, title = r.title, file = r.file, dir = r[4],
    error = r.error }
end

function M.run(args)
  if args[1] ~= nil then return cli.fail(2, "list: takes no arguments") end
  local seen, rows = {}, {}
  for _, dir in ipairs(cli.search_dirs()) do
    for _, f in ipairs(sys.listdir(dir) or {}) do
      local name = f:match("^(.+)%.lua$") or f:match("^(.+)%.md$")    -- Lua or a markdown checklist
      if name and not seen[name] then
        seen[name] = true
        local file = dir .. "/" .. f
        local run, plan = cli.load_plan(file)
        if run then
          rows[#rows + 1] = { name, plan.header.severity or "-", plan.header.title or "", dir,
            severity = plan.header.severity, title = plan.header.title, file = file }
        else
          rows[#rows + 1] = { name, "?", "(" .. plan .. ")", dir, error = plan, file = file }
        end
      end
    end
  end
  if args.json then
    local out = jsonout.array()
    for i, r in ipairs(rows) do out[i] = json_row(r) end
    jsonout.print(out)
    return 0
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
