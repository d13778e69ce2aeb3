-- runbook report: transcripts as a Markdown incident timeline
-- (stdlib/runbook/report.lua renders it), or with --html as a page with
-- the timeline drawn (stdlib/runbook/report_html.lua).
local cli = require("runbook.cli")
local operator = require("runbook.operator")
local sys = require("runbook.sys")
local ui = require("runbook.ui")

local M = {
  summary = "render transcripts as a Markdown timeline",
  synopsis = "TRANSCRIPT...",
  description = "Render one or more transcripts as a Markdown incident timeline: summary,\n" ..
    "timeline, actions taken and who confirmed what.  With --html, one self-contained\n" ..
    "HTML file (no network, no external assets): the verification, the timeline as a\n" ..
    "chart of steps and waits, the actions and every event.",
  options = {
    { name = "output", short = "o", value = "FILE", help = "write to FILE instead of standard output" },
    { name = "title", value = "TEXT", help = "the report's title" },
    { name = "html", help = "write one self-contained HTML page instead: the timeline drawn as a chart" },
  },
}

function M.run(args)
  if args[1] == nil then return cli.fail(2, "report: which transcripts? (runbook report FILE...)") end
  local report = require("runbook.report")
  local runs, err = report.load(args)
  if not runs then return cli.fail(2, "report: %s", err) end
  local text = args.html and require("runbook.report_html").page(runs, { title = args.title })
    or report.markdown(runs, { title = args.title })
  if args.output then
    local f, ferr = io.open(args.output, "w")
    if not f then return cli.fail(2, "report: cannot write %s: %s", args.output, ferr) end
    -- Like the transcript, 0600: a report holds incident details.  Set
    -- before the first byte is written.
    local okm, merr = pcall(sys.chmod, args.output, 384)
    if not okm then f:close(); return cli.fail(2, "report: %s", tostring(merr)) end
    local okw, werr = f:write(text, "\n")
    local okc, cerr = f:close()
    if not okw or not okc then
      return cli.fail(1, "report: cannot write %s: %s", args.output, tostring(werr or cerr))
    end
    ui.print("wrote " .. args.output)
  else
    operator.write(text, "\n")
  end
  return 0
end

return M
