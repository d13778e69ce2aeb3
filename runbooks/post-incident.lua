-- post-incident: write the incident report from the runs' transcripts.
-- runbook run post-incident -p transcripts="a.jsonl b.jsonl" -p ticket=7
--
-- The ticket (ID INC-YYYY-MM-DD-NNN, severity, start, end, duration,
-- affected services, runbooks run) comes from the transcripts; the timeline,
-- actions and confirmations from `runbook report` (stdlib/runbook/report.lua);
-- root cause, contributing factors and lessons are asked (an answers file
-- can give them: "[questions] Root cause = ...").  "\n" in an answer is a
-- line break.
runbook {
  name = "post-incident",
  title = "Write the incident report",
  severity = "P3",
  description = "Builds the incident ticket from one or more runbook transcripts, asks for the " ..
    "root cause, contributing factors and lessons, and writes it as Markdown.",
}

param("transcripts", { help = "transcript files (.jsonl), separated by spaces or commas", required = true })
param("output", { help = "where to write the Markdown (default: ./INC-YYYY-MM-DD-NNN.md)" })
param("ticket", { help = "the NNN of INC-YYYY-MM-DD-NNN: the day's incident number", default = "001" })
param("services", { help = "affected services, space/comma separated (default: target.services, " ..
  "else the runs' service params)" })
param("severity", { help = "override the severity found in the transcripts",
  choices = { "P0", "P1", "P2", "P3" } })
param("title", { help = "the ticket's title (default: the first run's runbook title)" })

local ir = require("incident_report")

-- Shared between the steps of one run.
local state = {}

local function affected(p)
  if p.services then return ir.paths(p.services) end
  if type(target.services) == "table" then return target.services end
  return nil
end

step("Read the transcripts", { id = "load" }, function(p)
  local paths = ir.paths(p.transcripts)
  state.runs = ir.load(paths)
  for _, r in ipairs(state.runs) do
    log.info("%s: %s run %s by %s, %s -> %s, %s; %s", r.path, r.runbook or "?", r.id or "?",
      r.operator or "?", ir.when(r.start), ir.when(r.finish or r.last), r.status or "unfinished",
      r.verified)
    if not tostring(r.verified):match("^verified") then
      log.warn("%s does not verify: the report will say so", r.path)
    end
  end
end)

step("Work out the ticket", { id = "facts" }, function(p)
  local f = ir.facts(state.runs, { ticket = p.ticket, services = affected(p), severity = p.severity,
    title = p.title })
  state.facts = f
  state.output = p.output or (f.id .. ".md")
  log.info("%s: %s", f.id, f.title)
  log.info("severity %s (%s)", f.severity, f.severity_source)
  log.info("from %s to %s (%s)", ir.when(f.start), ir.when(f.finish), f.duration_text)
  log.info("affected services: %s", #f.services > 0 and table.concat(f.services, ", ") or "(not recorded)")
  local dir = state.output:match("^(.*)/[^/]*$")
  if dir and dir ~= "" then
    local st = file.stat(dir)
    if st == nil or st.type ~= "dir" then
      error(string.format("the output directory %s does not exist (create it, or pass -p output=PATH)", dir), 0)
    end
  end
end)

step("Root cause, contributing factors, lessons", { id = "questions" }, function()
  state.answers = {
    root_cause = prompt("Root cause", { default = "to be determined" }),
    factors = prompt("Contributing factors", { default = "to be determined" }),
    lessons = prompt("Lessons learned", { default = "to be determined" }),
  }
end)

step("Write the report", { id = "write" }, function()
  local text = ir.markdown(state.facts, state.runs, state.answers)
  local out = state.output
  if file.stat(out) ~= nil then
    confirm(string.format("%s exists. Replace it?", out))
  end
  -- Through exec, so the write is recorded, and only shown in a dry run.
  local r = exec { "cp", "/dev/stdin", out, stdin = text, timeout = 30 }
  if r.dry_run then
    log.info("dry run: the report (%d lines) would be written to %s", select(2, text:gsub("\n", "")), out)
  else
    log.info("wrote %s (%d lines): %s", out, select(2, text:gsub("\n", "")), state.facts.id)
  end
end)
