-- runbook stats: incident metrics from transcripts (docs/stats.md).
-- Files are read and checked by runbook.report (the same reader as
-- `runbook report`); the figures are runbook.stats's.
local cli = require("runbook.cli")
local duration = require("runbook.duration")
local jsonout = require("runbook.jsonout")
local record = require("runbook.record")
local sys = require("runbook.sys")
local transcript = require("runbook.transcript")
local ui = require("runbook.ui")

local M = {
  summary = "incident metrics from transcripts: time to detect, mitigate, resolve",
  synopsis = "[TRANSCRIPT|DIR]... [--json] [--gap DURATION]",
  description = "Read transcripts (a directory is searched for *.jsonl files; with no argument,\n" ..
    "the default transcript directory) and print, per incident, the time to detect,\n" ..
    "to mitigate and to resolve, MTTR by severity, and per runbook each step's median\n" ..
    "duration, failure and skip rates and the questions operators answered \"no\".\n" ..
    "Each transcript's hash chain is verified first: one that does not verify is named\n" ..
    "and left out (exit 1). docs/stats.md says what each time is measured from.",
  options = {
    { name = "json", help = "print one JSON object, for scripts (docs/json.md)" },
    { name = "gap", value = "DURATION", help = "runs on a target this close are one incident (default 1h; 0: none)" },
  },
}

M.MAX_DEPTH = 8      -- directory levels searched below a DIR argument

-- The transcripts under dir, sorted, into list.
local function walk(dir, list, depth)
  local names = sys.listdir(dir)
  for _, name in ipairs(names or {}) do
    local path = dir .. "/" .. name
    local st = sys.stat(path)
    if st and st.type == "dir" and depth < M.MAX_DEPTH then
      walk(path, list, depth + 1)
    elseif st and st.type == "file" and name:match("%.jsonl$") then
      list[#list + 1] = path
    end
  end
end

-- The files to read, or nil and the message for an argument that is
-- neither a file nor a directory.
local function collect(args)
  local list, given = {}, {}
  for i = 1, #args do given[i] = args[i] end
  if #given == 0 then
    local dir = record.default_dir()
    if sys.stat(dir) then given[1] = dir else return list end
  end
  for _, a in ipairs(given) do
    local st = sys.stat(a)
    if st == nil then return nil, string.format("%s: no such file or directory", a) end
    if st.type == "dir" then
      walk((a:gsub("/+$", "")), list, 0)
    elseif st.type == "file" then
      list[#list + 1] = a
    else
      -- a FIFO or a terminal would be read twice (verified, then loaded): refused, not waited on
      return nil, string.format("%s: not a regular file or a directory", a)
    end
  end
  return list
end

-- Each file verified, then read and checked; runs, the left out ones
-- ({file, line, reason}), or nil and the message for a file that cannot
-- be read at all.
local function load(files)
  local report = require("runbook.report")
  local stats = require("runbook.stats")
  local runs, left = {}, jsonout.array()
  for _, path in ipairs(files) do
    local ok, res = transcript.verify(path)
    if ok == nil then return nil, res.reason or ("cannot read " .. path) end
    if not ok then
      left[#left + 1] = { file = path, line = res.bad_line > 0 and res.bad_line or nil,
        reason = "does not verify: " .. res.reason }
    else
      local loaded, err = report.load({ path })
      if loaded then
        runs[#runs + 1] = stats.run(path, loaded[1].events, report.epoch)
      else
        local line, why = tostring(err):match("^.-:(%d+): (.*)$")
        left[#left + 1] = { file = path, line = tonumber(line), reason = why or tostring(err) }
      end
    end
  end
  return runs, left
end

function M.run(args)
  local gap = 3600
  if args.gap and args.gap:match("^%s*0+%s*$") then
    gap = 0                      -- every run its own incident, unless resumed
  elseif args.gap then
    local g, why = duration.parse(args.gap)
    if not g then return cli.fail(2, "stats: --gap: %s", why) end
    gap = g
  end
  local files, err = collect(args)
  if not files then return cli.fail(2, "stats: %s", err) end
  local runs, left = load(files)
  if not runs then return cli.fail(2, "stats: %s", left) end
  local stats = require("runbook.stats")
  local out = require("runbook.stats_out")
  local result = { files = files, runs = runs, left = left, incidents = stats.incidents(runs, gap),
    severities = nil, runbooks = stats.runbooks(runs) }
  result.severities = stats.by_severity(result.incidents)
  for _, l in ipairs(left) do
    ui.eprint(string.format("runbook: stats: left out %s%s: %s", l.file, l.line and (":" .. l.line) or "",
      l.reason))
  end
  if args.json then jsonout.print(out.json(result)) else out.table(result) end
  return #left > 0 and 1 or 0
end

return M
