-- runbook.ui: what the operator sees, and how questions get answered.
--
-- Every question goes through ui.ask, which tries, in order: the answers
-- file (--answers), --yes for confirmations, defaults under --yes, and the
-- terminal.  With none of them available it raises an error naming the
-- question: a question never hangs a run that nobody is watching.
local operator = require("runbook.operator")
local record = require("runbook.record")
local transcript = require("runbook.transcript")

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
  for i = 1, parts.n do parts[i] = transcript.redact(tostring(parts[i])) end
  operator.write(table.concat(parts, "", 1, parts.n), "\n")
end

function ui.eprint(...)
  local parts = table.pack(...)
  for i = 1, parts.n do parts[i] = transcript.redact(tostring(parts[i])) end
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
-- without the command's own escape sequences (ours are added after).
-- Linear in what arrives, so a megabyte on one line costs what a megabyte
-- of short lines does: a chunk is cut at its newlines with a plain find, a
-- partial line waits as pieces that are never scanned again, and what one
-- chunk shows is written at once.  A line longer than ui.LINE_MAX is shown
-- cut: its first LINE_MAX bytes as soon as they are there, then, when it
-- ends, a note of how many bytes were not shown (the captured stdout keeps
-- them all, up to exec's own cap).
ui.LINE_MAX = 64 * 1024

local strip_ansi = require("runbook.exec").strip_ansi

-- The lines of one stream: emit(stream, line) for each whole line,
-- note(stream, hidden) after a cut one.  Returns feed(chunk) and flush().
-- A line that arrives whole in one chunk (nearly all) goes straight to emit.
local function line_splitter(emit, stream, note)
  local parts, len, hidden = {}, 0, -1   -- the partial line; bytes not shown
  -- Add bytes of the current line; a line reaching LINE_MAX is shown then.
  local function add(piece)
    if hidden >= 0 then hidden = hidden + #piece; return end
    local room = ui.LINE_MAX - len
    if #piece <= room then
      parts[#parts + 1], len = piece, len + #piece
      return
    end
    parts[#parts + 1] = piece:sub(1, room)
    emit(stream, table.concat(parts))
    parts, len, hidden = {}, 0, #piece - room
  end
  -- End the current line, whose last bytes are piece.
  local function finish(piece)
    if hidden >= 0 then
      note(stream, hidden + #piece)
    elseif #parts == 0 and #piece <= ui.LINE_MAX then
      emit(stream, piece)
    else
      add(piece)
      if hidden >= 0 then note(stream, hidden) else emit(stream, table.concat(parts)) end
    end
    parts, len, hidden = {}, 0, -1
  end
  local find, sub = string.find, string.sub
  local function feed(chunk)
    local pos, max = 1, ui.LINE_MAX
    while true do
      local nl = find(chunk, "\n", pos, true)
      if not nl then break end
      if len == 0 and hidden < 0 and nl - pos <= max then
        emit(stream, sub(chunk, pos, nl - 1))
      else
        finish(sub(chunk, pos, nl - 1))
      end
      pos = nl + 1
    end
    if pos <= #chunk then add(sub(chunk, pos)) end
  end
  local function flush()
    if len > 0 or hidden >= 0 then finish("") end
  end
  return feed, flush
end

function ui.output_sink(prefix)
  local bars = { stdout = ui.style("dim", prefix), stderr = ui.style("yellow", prefix) }
  -- one line redactor per stream: it hides a private key's body lines,
  -- which hold nothing a per-line redaction could recognise
  local redactors = { stdout = transcript.line_redactor(), stderr = transcript.line_redactor() }
  local out, n = {}, 0          -- what this chunk shows
  local function emit(stream, line)
    out[n + 1], out[n + 2], out[n + 3] = bars[stream], redactors[stream]:line(strip_ansi(line)), "\n"
    n = n + 3
  end
  local function note(stream, hidden)
    out[n + 1] = bars[stream] .. ui.style("dim", string.format(
      "[line cut at %d bytes: %d more not shown]", ui.LINE_MAX, hidden)) .. "\n"
    n = n + 1
  end
  local function write()
    if n == 0 then return end
    local text = table.concat(out, "", 1, n)
    n = 0
    operator.write(transcript.redact(text))
  end
  local streams = {}
  for _, name in ipairs({ "stdout", "stderr" }) do
    local feed, flush = line_splitter(emit, name, note)
    streams[name] = { feed = feed, flush = flush }
  end
  local sink = {}
  function sink.feed(stream, chunk)
    streams[stream].feed(chunk)
    write()
  end
  function sink.flush()
    streams.stdout.flush()
    streams.stderr.flush()
    write()
  end
  return sink
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

-- Read one line from the operator, with the question shown as the prompt.
local function read_answer(prompt_text, secret)
  -- readline shows the prompt itself, after turning echo off for a secret
  local line = operator.readline({ secret = secret, prompt = prompt_text })
  if line == nil then
    operator.write("\n")
    error("operator: no answer (end of input)", 0)
  end
  return line
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
      ui.print(ui.style("bold", "? ") .. q.question .. " " ..
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
  while true do
    local text = read_answer(ui.style("bold", "? ") .. q.prompt, q.secret)
    if q.secret then record.secret(text) end
    if text == "" and q.default ~= nil then text = q.default end
    local value, err = q.parse(text)
    if value ~= nil then return value, "operator" end
    ui.print("  " .. ui.style("yellow", err or "please answer again"))
  end
end

function ui.parse_yesno(text)
  local t = text:lower():match("^%s*(.-)%s*$")
  if t == "y" or t == "yes" then return true end
  if t == "n" or t == "no" then return false end
  return nil, "answer yes or no"
end

return ui
