-- runbook import: the Lua runbook a markdown checklist stands for.
local cli = require("runbook.cli")
local mdimport = require("runbook.mdimport")
local mdrun = require("runbook.mdrun")
local ui = require("runbook.ui")

local M = {
  summary = "write the Lua runbook of a markdown checklist",
  synopsis = "FILE.md",
  description = "Read a markdown checklist as 'runbook run FILE.md' does and write the same " ..
    "runbook as Lua, commented, for a team to grow: to stdout, or to -o FILE. " ..
    "Running the import gives the same plan as running the markdown.",
  options = {
    { name = "output", short = "o", value = "FILE", help = "write to FILE (e.g. runbooks/NAME.lua)" },
    { name = "force", short = "f", help = "overwrite an existing FILE" },
  },
}

function M.run(args)
  local path = args[1]
  if path == nil then return cli.fail(2, "import: which file? (runbook import FILE.md [-o FILE])") end
  if args[2] ~= nil then return cli.fail(2, "import: one file at a time (got %q too)", args[2]) end
  local doc, err = mdrun.read(path)
  if not doc then return cli.fail(2, "%s", err:match("^[^:]+:%d+: ") and err or "import: " .. err) end
  local source = mdimport.to_lua(doc)
  if not args.output then
    io.stdout:write(source)
    return 0
  end
  if cli.is_file(args.output) and not args.force then
    return cli.fail(2, "import: %s exists (use --force to overwrite)", args.output)
  end
  local f, ferr = io.open(args.output, "w")
  if not f then return cli.fail(2, "import: cannot write %s: %s", args.output, ferr) end
  local ok, werr = f:write(source)
  local cok, cerr = f:close()
  if not ok or not cok then return cli.fail(1, "import: writing %s: %s", args.output, werr or cerr) end
  ui.print(string.format("wrote %s (%d steps, %d params): check it with 'runbook check %s'",
    args.output, #doc.steps, #doc.params.order, args.output))
  return 0
end

return M
