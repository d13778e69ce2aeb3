-- runbook.ui: what the operator sees, and how questions get answered.
--
-- Every question goes through ui.ask, which tries, in order: the answers
-- file (--answers), --yes for confirmations, defaults under --yes, and the
-- terminal.  With none of them available it raises an error naming the
-- question: a question never hangs a run that nobody is watching.
local operator = require("runbook.operator")
local record = require("runbook.record")
local redact = require("runbook.redact").redact

local ui = {}

local function color_enabled()
  local no_color = os.getenv("NO_COLOR")
  if no_color ~= nil and no_color ~= "" then return false end
  if os.getenv("TERM") == "dumb" then return false end
  return operator.isatty(1)
end

ui.color = color_enabled()

local codes = { bold = "1", dim = "2", red = "31", green = "32", yellow = "33",
                blue = "34", magenta = "35", cyan = "36" }

function ui.style(style, text)
  if not ui.color or not codes[style] then return text end
  return "\27[" .. codes[style] .. "m" .. text .. "\27[0m"
end

-- Everything printed goes through redaction: a secret never reaches the
-- screen in clear either.
function ui.print(...)
  local parts = table.pack(...)
  for i = 1, parts.n do parts[i] = redact(tostring(parts[i])) end
  operator.write(table.concat(parts, "", 1, parts.n), "\n")
end

function ui.eprint(...)
  local parts = table.pack(...)
  for i = 1, parts.n do parts[i] = redact(tostring(parts[i])) end
  operator.ewrite(table.concat(parts, "", 1, parts.n), "\n")
end

function ui.duration(seconds)
  if seconds < 1 then return string.format("%.0f ms", seconds * 1000) end
  if seconds < 120 then return string.format("%.1f s", seconds) end
  return string.format("%dm%02ds", seconds // 60, math.floor(seconds % 60))
end

local level_style = { info = "cyan", warn = "yellow", error = "red" }

function ui.log(level, msg)
  local line = "  " .. ui.style(level_style[level] or "bold", level .. ":") .. " " .. msg
  if level == "error" then ui.eprint(line) else ui.print(line) end
end

-- Output of a running command: whole lines, indented, as they arrive,
-- without the command's own escape sequences (ours are added after), each
-- through redaction and a line redactor per stream (which hides a private
-- key's body lines, which hold nothing a per-line redaction could
-- recognise).  Linear in what arrives.  A line longer than ui.LINE_MAX is
-- shown cut: its first LINE_MAX bytes as soon as they are there, then,
-- when it ends, a note of how many bytes were not shown (the captured
-- stdout keeps them all, up to exec's own cap).  The work is exec.sink's,
-- in C (src/output_sink.c); exec feeds it straight from its reads.
ui.LINE_MAX = 64 * 1024

local exec_sink = require("runbook.exec").sink

-- Returns {feed = fn(stream, chunk), flush = fn()}.
function ui.output_sink(prefix)
  local on, off = ui.style("dim", "|"):match("^(.-)|(.*)$")
  local feed, flush = exec_sink {
    stdout = ui.style("dim", prefix), stderr = ui.style("yellow", prefix),
    line_max = ui.LINE_MAX, note = { on, off },
  }
  return { feed = feed, flush = flush }
end

-- Error raised when a question cannot be answered: names the question.
local function unanswerable(ctx, question)
  local where = ctx.step and string.format(" (step %d '%s', id '%s')", ctx.step.index,
    ctx.step.title, ctx.step.id) or ""
  return string.format(
    "question needs an answer but standard input is not a terminal: %q%s; " ..
    "answer it with --answers FILE (a line '[%s] %s = ANSWER')%s",
    question, where, ctx.step and ctx.step.id or "*", question,
    ctx.is_confirmation and " or --yes" or "")
end

-- ui.on_wait(question) -> nil, or a wait {timeout(), tick(), done()}: set
-- by runbook.escalation, so a question that waits too long escalates.
ui.on_wait = nil

-- Read one line from the operator, with the question shown as the prompt.
-- During a wait the read times out when wait.timeout() says, wait.tick()
-- does its work (one line printed: the prompt is shown again) and the
-- read goes on with what was typed so far.
local function read_answer(prompt_text, secret, wait)
  -- readline shows the prompt itself, after turning echo off for a secret
  local line = operator.readline({ secret = secret, prompt = prompt_text, timeout = wait and wait.timeout(),
    tick = wait ~= nil })
  while line == false do
    if wait.tick() then operator.write(prompt_text) end
    line = operator.readline({ secret = secret, timeout = wait.timeout(), tick = true })
  end
  if line == nil then
    operator.write("\n")
    error("operator: no answer (end of input)", 0)
  end
  return line
end

-- The terminal's answer to q, asked again until it parses.
local function ask_terminal(q, wait)
  while true do
    local text = read_answer(ui.style("bold", "? ") .. q.prompt, q.secret, wait)
    if q.secret then record.secret(text) end
    if text == "" and q.default ~= nil then text = q.default end
    local value, err = q.parse(text)
    if value ~= nil then return value end
    ui.print("  " .. ui.style("yellow", err or "please answer again"))
  end
end

-- ask{ctx=, question=, prompt=, parse=fn(text)->value|nil,err, confirmation=,
--      default=, secret=}
-- ctx is the run: {answers=, yes=, interactive=, step=}.  Returns the value
-- and where the answer came from ("answers", "yes", "default", "operator").
-- Every answer to a secret question is marked secret as soon as it is read,
-- a rejected one too (it may be the secret with a typo), and no message
-- quotes it: a rejection names the question and the rule it broke.
function ui.ask(q)
  local ctx = q.ctx
  local step_id = ctx.step and ctx.step.id or nil
  -- "!error" is the answers file's key for the retry/skip/abort question:
  -- the operator is shown the question itself
  local shown = q.question == "!error" and (q.prompt:gsub("%s+$", "")) or q.question
  if ctx.answers then
    local text = ctx.answers:next(step_id, q.question)
    -- "Question = " with nothing after it takes the default, as Enter does.
    if text == "" and q.default ~= nil then text = tostring(q.default) end
    if text ~= nil then
      if q.secret then record.secret(text) end
      local value, err = q.parse(text)
      if value == nil then
        error(string.format("answers file: %s is not a valid answer to %q: %s",
          q.secret and "the answer (secret, not shown)" or string.format("%q", text),
          q.question, err or "not accepted"), 0)
      end
      ui.print(ui.style("bold", "? ") .. shown .. " " ..
        ui.style("dim", "[from answers file: " .. (q.secret and "***" or text) .. "]"))
      return value, "answers"
    end
  end
  if q.confirmation and ctx.yes then
    ui.print(ui.style("bold", "? ") .. q.question .. " " .. ui.style("dim", "[--yes]"))
    return q.parse("yes"), "yes"
  end
  if ctx.yes and q.default ~= nil then
    ui.print(ui.style("bold", "? ") .. q.question .. " " .. ui.style("dim", "[default]"))
    return q.parse(q.default), "default"
  end
  if not ctx.interactive then
    error(unanswerable({ step = ctx.step, is_confirmation = q.confirmation }, q.question), 0)
  end
  -- (the retry/skip/abort question's answers-file key "!error" is no words for the room)
  local wait = ui.on_wait and ui.on_wait(shown)
  local ok, value = pcall(ask_terminal, q, wait)
  if wait then wait.done() end
  if not ok then error(value, 0) end
  return value, "operator"
end

function ui.parse_yesno(text)
  local t = text:lower():match("^%s*(.-)%s*$")
  if t == "y" or t == "yes" then return true end
  if t == "n" or t == "no" then return false end
  return nil, "answer yes or no"
end

return ui
