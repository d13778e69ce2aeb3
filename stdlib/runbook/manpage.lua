-- runbook.manpage: `runbook __manpage [FILE]` writes runbook(1) in roff,
-- a section per command, from the tables `--help` prints (cli.COMMANDS,
-- each command's summary, synopsis, description and options).  The build
-- runs it after every change to stdlib/runbook/cmd/ (CMakeLists.txt), so
-- the page cannot lag behind an option.  Without FILE it writes to stdout.
local cli = require("runbook.cli")
local host = require("runbook.host")

local M = {}

local HELP = { name = "help", short = "h", help = "show this help" }

-- Text as roff reads it: backslashes doubled, a line never starting a
-- request, hyphens in options kept as hyphens (\-).
local function esc(s)
  s = tostring(s):gsub("\\", "\\e")
  s = s:gsub("\n([.'])", "\n\\&%1")
  if s:match("^[.']") then s = "\\&" .. s end
  return s
end

local function flag(s) return esc(s):gsub("%-", "\\-") end

-- A description wrapped for a terminal, as filled paragraphs.
local function paragraphs(text)
  local out = {}
  for para in (text .. "\n\n"):gmatch("(.-)\n%s*\n") do
    para = para:gsub("%s*\n%s*", " "):gsub("^%s+", ""):gsub("%s+$", "")
    if para ~= "" then out[#out + 1] = esc(para) end
  end
  return table.concat(out, "\n.PP\n")
end

local function option_item(o)
  local head = {}
  if o.short then head[#head + 1] = "\\fB\\-" .. esc(o.short) .. "\\fR, " end
  head[#head + 1] = "\\fB\\-\\-" .. flag(o.name) .. "\\fR"
  if o.value then head[#head + 1] = " \\fI" .. esc(o.value) .. "\\fR" end
  return table.concat({ ".TP", table.concat(head), esc(o.help or "") }, "\n")
end

local function command_section(name, cmd)
  local synopsis = cmd.synopsis and cmd.synopsis ~= "" and (" " .. cmd.synopsis) or ""
  local lines = {
    string.format('.SS "runbook %s%s"', flag(name), flag(synopsis):gsub('"', "'")),
    paragraphs(cmd.description or cmd.summary or ""),
  }
  local options = {}
  for i, o in ipairs(cmd.options or {}) do options[i] = o end
  options[#options + 1] = HELP
  for _, o in ipairs(options) do lines[#lines + 1] = option_item(o) end
  return table.concat(lines, "\n")
end

local HEAD = [[
.SH NAME
runbook \- run incident runbooks step by step
.SH SYNOPSIS
.B runbook
.I command
.RI [ options ]
.RI [ arguments ]
.br
.B runbook
.BR \-\-help " | " \-\-version
.SH DESCRIPTION
.B runbook
runs incident runbooks, Lua scripts or markdown checklists, step by step:
the operator confirms before risky steps, a dry run rehearses a runbook
without changing anything, a REPL serves ad-hoc diagnosis, and everything
done is recorded in a hash-chained JSON Lines transcript that
.B runbook verify
checks.
.PP
.I NAME
is looked up in
.IR ./runbooks ,
then the directories of
.BR $RUNBOOK_PATH ,
then the installed share directory.
Each command below also answers
.BR \-\-help .
.SH COMMANDS
]]

local TAIL = [[
.SH EXIT STATUS
.TP
.B 0
done
.TP
.B 1
a step failed, the operator aborted, or the transcript could not be written
.TP
.B 2
usage, input or runbook load error
.TP
.B 130
interrupted (a second Ctrl-C)
.TP
.B 128+N
ended by signal N (143 SIGTERM, 129 SIGHUP)
.SH ENVIRONMENT
.TP
.B RUNBOOK_PATH
colon-separated directories searched for runbooks after
.I ./runbooks
.TP
.B XDG_CONFIG_HOME
the config file is
.I $XDG_CONFIG_HOME/runbook/config.lua
(default
.IR ~/.config/runbook/config.lua )
.TP
.B XDG_STATE_HOME
transcripts go to
.I $XDG_STATE_HOME/runbook/transcripts/
(default
.IR ~/.local/state/runbook/transcripts/ )
.TP
.B NO_COLOR
when set, output is not coloured
.SH FILES
.TP
.I share/runbook/runbooks/
the runbooks shipped with runbook, under the installation prefix
.TP
.I share/runbook/stdlib/
the Lua modules runbooks and commands use
.SH SEE ALSO
The authors' guide (authoring.md), the config file's targets
(targets.md), the --json shapes (json.md), what stats measures
(stats.md) and the incident room (room.md), installed under
.IR share/doc/runbook/
with the
.I examples/
(docs/ in the source tree).
]]

function M.render()
  local parts = {
    string.format('.TH RUNBOOK 1 "" "runbook %s" "User Commands"', esc(host.version)),
    HEAD,
  }
  for _, name in ipairs(cli.COMMANDS) do
    parts[#parts + 1] = command_section(name, require("runbook.cmd." .. name)) .. "\n"
  end
  parts[#parts + 1] = TAIL
  return table.concat(parts, "\n")
end

-- argv = { "__manpage", [FILE] }.
function M.main(argv)
  local page = M.render()
  local path = argv[2]
  if path == nil or path == "-" then
    io.stdout:write(page)
    return 0
  end
  local f, err = io.open(path, "w")
  if not f then return cli.fail(2, "__manpage: %s", err) end
  f:write(page)
  f:close()
  return 0
end

return M
