-- runbook repl: a Lua prompt with every primitive.  runbook.lineedit
-- (src/lineedit.c) reads the lines; stdlib/runbook/repl.lua evaluates and
-- records them.
local cli = require("runbook.cli")
local lineedit = require("runbook.lineedit")
local loop = require("runbook.loop")

local M = {
  summary = "an interactive Lua prompt with every primitive",
  synopsis = "[--target NAME] [--dry-run] [--yes] [--config FILE] [--transcript PATH]",
  description =
    "An interactive Lua prompt with every runbook primitive (exec, http, sql, ...).\n" ..
    "An expression prints its value (tables pretty-printed); a chunk that is not\n" ..
    "complete yet continues on the next line. Globals persist between lines,\n" ..
    "locals do not. Every evaluation is recorded in a transcript. Ctrl-C stops\n" ..
    "the running evaluation or discards the line being typed; Ctrl-D quits.\n" ..
    "Tab completes globals, fields and methods (sql., db:, target.); help() lists\n" ..
    "every call, help(http.get) prints its documentation. The prompt names the\n" ..
    "target and says live or dry-run; against a live target each write is\n" ..
    "confirmed first (--yes answers yes when input is piped).\n" ..
    "History is kept in $XDG_STATE_HOME/runbook/repl_history, secrets redacted.\n" ..
    "When standard input is not a terminal, its lines are evaluated in turn and\n" ..
    "the exit code is 1 if any evaluation failed.",
  ends_on_term = true,
  options = {
    { name = "target", short = "t", value = "NAME", help = "use target NAME from the config file (the `target` global)" },
    { name = "config", value = "FILE", help = "config file (default $XDG_CONFIG_HOME/runbook/config.lua)" },
    { name = "dry-run", short = "n", help = "rehearse: show mutating actions instead of running them" },
    { name = "yes", short = "y", help = "answer yes to the confirmation of each write against a live target" },
    { name = "transcript", value = "PATH", help = "write the transcript to PATH" },
  },
}

local function start(args)
  return require("runbook.repl").start(args)
end

-- Exit 130 for Ctrl-C on a pipe, 128 + N for signal N, 1 when the record
-- could not be closed or (not on a terminal) an evaluation failed.
function M.run(args)
  local ok, session, code = cli.protect(start, args)
  if not ok then return 2 end
  if session == nil then return math.tointeger(code) or 2 end
  local status, failed, tty = lineedit.loop(session)
  local finished = cli.protect(session.finish, session, status)
  if status == "interrupted" then return 130 end
  if status == "terminated" then return 128 + loop.terminated() end
  if not finished or (not tty and failed > 0) then return 1 end
  return 0
end

return M
