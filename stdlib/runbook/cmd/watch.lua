-- runbook watch: follow a run from any machine, through the room's store.
local cjson = require("cjson")
local cli = require("runbook.cli")
local loop = require("runbook.loop")
local report = require("runbook.report")
local roomcmd = require("runbook.roomcmd")
local transcript = require("runbook.transcript")
local ui = require("runbook.ui")

local M = {
  summary = "follow a run as it goes (the room)",
  synopsis = "RUN | --latest [RUNBOOK] [--from-start] [--config FILE] [--target NAME]",
  description = "Follow a run through the room's store: the steps, commands, questions and\n" ..
    "answers as its transcript records them, each line's hash chain checked as it\n" ..
    "comes. RUN is a run id or a unique prefix of one; --latest follows the run\n" ..
    "started last (of RUNBOOK). Without --from-start it starts from now. It ends\n" ..
    "when the run ends, or on Ctrl-C. A watcher only reads: it never changes the run.",
  options = {
    { name = "latest", help = "the run started last (of RUNBOOK, when given)" },
    { name = "from-start", help = "replay the run's lines so far first" },
    roomcmd.OPTIONS[1], roomcmd.OPTIONS[2],
  },
}

local WAIT = 1.0        -- seconds per wait on the store, so Ctrl-C is seen
local QUIET_CHECK = 3   -- waits without a line before checking the run is alive
local HASH_TAIL = #',"hash":"' + 64 + #'"}'

-- The run id from RUN or --latest [RUNBOOK]; nil, message when none.
local function which_run(store, args)
  if args.latest then
    local id = store:latest(args[1])
    if id then return id end
    return nil, args[1] and string.format("no run of %q in the room", args[1]) or "no run in the room yet"
  end
  if not args[1] then return nil, "watch: which run? (a run id or prefix, or --latest; 'runbook runs' lists them)" end
  local ids = store:find(args[1])
  if #ids == 1 then return ids[1] end
  if #ids == 0 then return nil, string.format("no run %q in the room ('runbook runs' lists them)", args[1]) end
  return nil, string.format("run prefix %q is not unique (%s, %s, ...): give more of it", args[1], ids[1], ids[2])
end

-- Check a line against the one before (nil: none seen): its own hash, its
-- prev, its seq.  Returns the event, or nil and why the line is bad, and
-- the state for the next line (the line's own hash, so a break shows once).
local function check(line, last)
  local ok, ev = pcall(cjson.decode, line)
  if not ok or type(ev) ~= "table" then return nil, "not a JSON object", last end
  local next_last = { seq = ev.seq, hash = ev.hash }
  if type(ev.prev) ~= "string" or type(ev.hash) ~= "string" then
    return ev, "no prev/hash members", next_last
  end
  local body = line:sub(1, #line - HASH_TAIL) .. "}"
  if transcript.sha256(ev.prev .. body) ~= ev.hash then return ev, "its hash does not match its content", next_last end
  if last and ev.prev ~= last.hash then return ev, string.format("its prev is not the hash of line %s", tostring(last.seq)), next_last end
  if last and ev.seq ~= last.seq + 1 then return ev, string.format("seq %s follows %s", tostring(ev.seq), tostring(last.seq)), next_last end
  return ev, nil, next_last
end

-- A command's output as the operator saw it under the command (the
-- transcript holds what the run kept of it).
local function show_output(text)
  if type(text) ~= "string" then return end
  for line in text:gmatch("([^\n]*)\n?") do
    if line ~= "" then ui.print("           | " .. line) end
  end
end

-- (a JSON number comes back a float: 5.0 lines are 5)
local function s(v)
  if v == nil then return "" end
  if math.type(v) == "float" and v == math.floor(v) and math.abs(v) < 2^53 then return string.format("%d", v) end
  return tostring(v)
end

-- The room's own events (docs/room.md); the rest as report words them.
local ROOM_EVENTS = {
  waiting = function(ev)
    return string.format("waiting for the %s: %s", ev.on == "approval" and "approval" or "operator", s(ev.question))
  end,
  room = function(ev)
    if ev.state == "unreachable" then return "the store was unreachable: " .. s(ev.error) end
    return string.format("the store was back (%s line(s) caught up)", s(ev.missed))
  end,
  approval = function(ev)
    return string.format("%s by %s%s: %s", ev.approved and "approved" or "rejected", s(ev.by),
      ev.attested and " (attested by the operator)" or "", s(ev.text))
  end,
  update = function(ev) return string.format("update by %s: %s", s(ev.by), s(ev.text)) end,
  reminder = function(ev) return string.format("reminder: %s (%s)", s(ev.due), s(ev.action)) end,
  escalation = function(ev)
    return string.format("escalated to %s after %s s waiting for the %s", s(ev.channel), s(ev.waited), s(ev.on))
  end,
}

local function render(ev)
  local ts = type(ev.ts) == "string" and ev.ts:match("T(%d%d:%d%d:%d%d)") or "        "
  local e = ev.event
  local text = ROOM_EVENTS[e] and ROOM_EVENTS[e](ev) or report.describe(ev, true)
  local style = (e == "step.start" or e == "run.start" or e == "run.end") and "bold"
    or (e == "waiting" and "yellow") or nil
  ui.print(ui.style("dim", ts .. " ") .. (style and ui.style(style, text) or text))
  if e == "call" and type(ev.result) == "table" then
    show_output(ev.result.stdout)
    show_output(ev.result.stderr)
  end
end

-- Show rows, checking each; returns the chain state and whether the run ended.
local function show(rows, last)
  for _, row in ipairs(rows) do
    local ev, bad
    local seq = tonumber(row.line:match('^{"seq":(%d+)'))
    if last and seq and seq <= last.seq then goto shown end   -- republished after the store came back
    ev, bad, last = check(row.line, last)
    if bad then
      ui.eprint(ui.style("red", "watch: ") .. string.format("line %s does not chain: %s", tostring(row.seq), bad))
    end
    if ev then render(ev) end
    if ev and ev.event == "run.end" then return last, true end
    ::shown::
  end
  return last, false
end

-- The store went away under the watch (restarted, failed over): say so
-- once, connect again every second until it answers or Ctrl-C, then go
-- on from the last line shown.  Returns the new store, or nil on Ctrl-C.
local function reconnect(store, why)
  ui.eprint(ui.style("yellow", "watch: ") .. string.format("the store went away (%s); reconnecting " ..
    "(Ctrl-C stops)", tostring(why or "connection lost")))
  pcall(store.close, store)
  while loop.interrupts() == 0 do
    local ok, fresh = pcall(require("runbook.roomstore").connect, store.spec)
    if ok then
      ui.eprint(ui.style("yellow", "watch: ") .. "the store is back")
      return fresh
    end
    if not pcall(loop.sleep, 1) then return nil end
  end
end

-- The next rows, through a store that may go away and come back; the
-- store to use from now on.  nil rows: Ctrl-C.
local function next_rows(state, run, cursor)
  while true do
    local ok, rows, c = pcall(state.store.next, state.store, run, cursor, WAIT)
    if loop.interrupts() > 0 then return nil end
    if ok and rows ~= nil then return rows, c end
    local fresh = reconnect(state.store, ok and c or rows)
    if fresh == nil then return nil end
    state.store = fresh
    -- (a Redis stream restarted empty is republished from the start: the
    -- lines already shown are skipped by their seq)
    if state.store.spec.backend == "redis" then cursor = nil end
  end
end

-- A run whose publisher stopped beating without a run.end (killed, its
-- machine gone) ends the watch: no more lines will come.
local function publisher_died(store, run)
  local r = store:summary(run)
  if r and require("runbook.cmd.runs").state(r) == "terminated" and r.state ~= "terminated" then
    ui.eprint(ui.style("red", "watch: ") .. string.format("run %s stopped publishing without ending " ..
      "(its process was killed or its machine is gone): terminated", run))
    return true
  end
  return false
end

local function follow(store, run, from_start)
  local cursor, last
  if not from_start then
    local row
    cursor, row = store:tail(run)
    if row then
      local ev, _, l = check(row.line, nil)
      last = l
      if ev and ev.event == "run.end" then
        ui.print(string.format("run %s has ended (%s); --from-start replays it", run, tostring(ev.status)))
        return 0, store
      end
    end
  end
  local quiet, state = 0, { store = store }
  while true do
    local rows, c = next_rows(state, run, cursor)
    if rows == nil then return 130, state.store end
    cursor = c
    local ended
    last, ended = show(rows, last)
    if ended then return 0, state.store end
    quiet = #rows > 0 and 0 or quiet + 1
    if quiet >= QUIET_CHECK and publisher_died(state.store, run) then return 1, state.store end
  end
end

function M.run(args)
  if args[2] ~= nil then return cli.fail(2, "watch: one run at a time (got %q too)", args[2]) end
  local store, code, err = roomcmd.store(args)
  if not store then return cli.fail(code, "%s", err) end
  local ok, rc = pcall(function()
    local run, why = which_run(store, args)
    if not run then return cli.fail(2, "%s", why) end
    ui.print(ui.style("dim", string.format("watching run %s (as %s)%s", run, store:whoami(),
      args["from-start"] and "" or ", from now")))
    local code
    code, store = follow(store, run, args["from-start"])
    return code
  end)
  pcall(store.close, store)
  if not ok and loop.interrupts() > 0 then return 130 end   -- Ctrl-C during a read
  if not ok then return cli.fail(1, "%s", tostring(rc)) end
  return rc
end

return M
