-- runbook.report_html: the report as one self-contained HTML page
-- (runbook report --html): each transcript's verification at the top,
-- the timeline drawn as an SVG Gantt chart of the lanes runbook.report
-- worked out (report.lanes), the actions taken and every event.
--
-- Nothing in the page is fetched: no script, no link, no image, no font;
-- and its Content-Security-Policy forbids any, so a report opened from a
-- mail attachment stays offline and inert even if something slipped past
-- the escaping.  Every string taken from a transcript goes through esc().
local report = require("runbook.report")

local H = {}

-- The chart's colours; a status is never told by colour alone (a pattern,
-- a shape and the words beside the bar say it too).
local COLOR = {
  ok = "#2e7d32", failed = "#c62828", stripe = "#7b1111", skipped = "#bdbdbd", edge = "#424242",
  declined = "#ef6c00", unfinished = "#546e7a", operator = "#f9a825", approval = "#7b1fa2",
  timer = "#0288d1", notify = "#1565c0", plot = "#f3f5f8", grid = "#d5dae0", text = "#212121",
  dim = "#616161",
}
H.COLOR = COLOR

local W, PLOT_X, ROW_H, TOP = 1120, 340, 26, 40
local PLOT_W = W - PLOT_X - 24

local ESC = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }

-- Text or attribute value: markup characters escaped, control characters
-- (which HTML cannot carry) dropped.
local function esc(s)
  if type(s) == "number" then s = report.num(s) end
  s = tostring(s == nil and "" or s):gsub("[%z\1-\8\11\12\14-\31\127]", "")
  return (s:gsub("[&<>\"']", ESC))
end
H.esc = esc

-- At most n characters, counted in UTF-8 where the string is UTF-8.
local function cut(s, n)
  s = tostring(s or ""):gsub("%s+", " ")
  local len = utf8.len(s)
  if len == nil then return #s > n and (s:sub(1, n - 1) .. "…") or s end
  if len <= n then return s end
  return s:sub(1, utf8.offset(s, n) - 1) .. "…"
end

local function clock(t, with_ms)
  local ms = math.floor(t * 1000 + 0.5)
  local s = os.date("!%H:%M:%S", ms // 1000)
  return with_ms and string.format("%s.%03d", s, ms % 1000) or s
end

local function secs(d)
  if d < 1 then return string.format("%d ms", math.floor(d * 1000 + 0.5)) end
  if d < 60 then return string.format("%.1f s", d) end
  return report.duration(d)
end

-- Tick spacing: the smallest of these that gives at most `most` ticks.
local STEPS = { 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300,
  600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400 }

local function tick_step(span, most)
  for _, s in ipairs(STEPS) do
    if span / s <= most then return s end
  end
  return math.ceil(span / most / 86400) * 86400
end

-- The time axis: ticks with labels and grid lines.  Under a second apart
-- they count from the first event (+0.25 s), else they are clock times
-- on whole multiples of the spacing.
local function axis(out, scale, bottom)
  local step = tick_step(scale.span, 8)
  local first, label
  if step < 1 then
    local places = step < 0.01 and 3 or step < 0.1 and 2 or 1
    first = scale.t0
    label = function(t) return string.format("+%." .. places .. "f s", t - scale.t0) end
  else
    first = math.ceil(scale.t0 / step) * step
    label = function(t) return clock(t, false) end
  end
  local t = first
  while t <= scale.t0 + scale.span + 1e-9 do
    local x = scale.x(t)
    out[#out + 1] = string.format('<line class="grid" x1="%d" y1="%d" x2="%d" y2="%d"/>', x, TOP - 6, x, bottom)
    out[#out + 1] = string.format('<text class="tick" x="%d" y="%d" text-anchor="middle">%s</text>', x, TOP - 10,
      esc(label(t)))
    t = t + step
  end
  out[#out + 1] = string.format('<text class="axis" x="%d" y="12">time (UTC)%s</text>', PLOT_X,
    step < 1 and (", from " .. clock(scale.t0, true)) or "")
end

-- Shapes, drawn centred on (x, y): never text glyphs, whose font may lack them.
local SHAPE = {}
function SHAPE.cross(x, y, colour)
  return string.format('<path class="cross" d="M%d %dl8 8m0 -8l-8 8" stroke="%s" stroke-width="2.5"/>',
    x - 4, y - 4, colour or COLOR.stripe)
end
function SHAPE.retry(x, y)
  return string.format('<path class="retry" d="M%d %da4 4 0 1 1 -4 -4" fill="none" stroke="%s" stroke-width="2"/>' ..
    '<path d="M%d %dl4 -3l-4 -3z" fill="%s"/>', x + 4, y, COLOR.edge, x - 1, y - 1, COLOR.edge)
end
function SHAPE.diamond(x, y, fill, stroke)
  return string.format('<path class="diamond" d="M%d %dl6 6l-6 6l-6 -6z" fill="%s" stroke="%s" stroke-width="1.5"/>',
    x, y - 6, fill, stroke or "#ffffff")
end
function SHAPE.triangle(x, y, fill, stroke)
  return string.format('<path class="triangle" d="M%d %dh12l-6 10z" fill="%s" stroke="%s" stroke-width="1.5"/>',
    x - 6, y - 5, fill, stroke or "#ffffff")
end
function SHAPE.circle(x, y)
  return string.format('<circle class="point" cx="%d" cy="%d" r="4.5" fill="#ffffff" stroke="%s" stroke-width="2.5"/>',
    x, y, COLOR.operator)
end

-- How a bar of status s is filled and outlined.  An attempt that failed
-- is drawn failed whatever the operator decided after it (skip).
local function bar_style(status, failed)
  if failed then return "failed", 'fill="url(#rb-hatch)"' end
  if status == "ok" then return "ok", string.format('fill="%s"', COLOR.ok) end
  if status == "skipped" then
    return "skipped", string.format('fill="%s" stroke="%s" stroke-dasharray="3 2"', COLOR.skipped, COLOR.edge)
  end
  if status == "declined" then return "declined", string.format('fill="%s"', COLOR.declined) end
  if status == "unfinished" then
    return "unfinished", string.format('fill="%s" stroke="%s" stroke-dasharray="2 2"', COLOR.unfinished, COLOR.edge)
  end
  return "failed", 'fill="url(#rb-hatch)"'
end

local function rect(out, x0, x1, y, h, attrs, data, tip)
  out[#out + 1] = string.format('<rect x="%d" y="%d" width="%d" height="%d" %s %s><title>%s</title></rect>',
    x0, y, math.max(x1 - x0, 3), h, attrs, data, esc(tip))
end

-- Words beside a lane's last bar or mark, right of it, or left of where
-- it starts when the right edge is near.
local function note(out, x0, x1, y, text)
  local width = 6.5 * (utf8.len(text) or #text)
  if x1 + 12 + width < PLOT_X + PLOT_W or x0 - 12 - width < PLOT_X then
    out[#out + 1] = string.format('<text class="note" x="%d" y="%d">%s</text>', x1 + 12, y + 4, esc(text))
  else
    out[#out + 1] = string.format('<text class="note" x="%d" y="%d" text-anchor="end">%s</text>', x0 - 12, y + 4,
      esc(text))
  end
end

local function attempt_words(bar)
  local w = bar.status or "?"
  if bar.error and bar.status == "skipped" then w = "failed" end
  if bar.decision then w = w .. " → " .. tostring(bar.decision) end
  return w
end

local function step_marks(out, scale, lane, mid)
  for _, m in ipairs(lane.marks) do
    local x = scale.x(m.t)
    local tip = m.kind == "notify" and report.describe(m.ev, true) or report.plain_approval(m.ev)
    local shape
    if m.kind == "approval" then shape = SHAPE.diamond(x, mid, COLOR.approval)
    elseif m.kind == "notify" then shape = SHAPE.triangle(x, mid, m.ok and COLOR.notify or "#ffffff", COLOR.notify)
    else shape = SHAPE.diamond(x, mid, "#ffffff", COLOR.failed) .. SHAPE.cross(x, mid, COLOR.failed)
    end
    out[#out + 1] = string.format('<g class="mark" data-kind="%s" data-step="%s"><title>%s</title>%s</g>',
      m.kind, esc(lane.id), esc(tip), shape)
  end
end

local function step_row(out, scale, lane, y)
  local mid, n = y + ROW_H // 2 + 2, #lane.bars
  local label = string.format("%s  %s%s", esc(lane.index or ""), esc(cut(lane.title, 40)),
    n > 1 and string.format(" (%d attempts)", n) or "")
  out[#out + 1] = string.format('<text class="t-step" x="8" y="%d"><title>%s</title>%s</text>', mid + 4,
    esc(lane.title), label)
  local words = {}
  for _, bar in ipairs(lane.bars) do
    local x0, x1 = scale.x(bar.t0), scale.x(bar.t1 or bar.t0)
    local cls, attrs = bar_style(bar.status, bar.error ~= nil)
    rect(out, x0, x1, mid - 6, 12, attrs, string.format('class="bar %s" data-kind="attempt" data-status="%s" ' ..
      'data-step="%s" data-attempt="%d"', cls, cls, esc(lane.id), bar.attempt), string.format("%s attempt %d: %s%s",
      lane.title, bar.attempt, attempt_words(bar), bar.error and (": " .. bar.error) or ""))
    if cls == "failed" then out[#out + 1] = SHAPE.cross(math.max(x0, x1 - 4), mid - 11) end
    if bar.attempt > 1 then out[#out + 1] = SHAPE.retry(x0 + 2, mid - 11) end
    words[#words + 1] = (bar.attempt > 1 and ("retry " .. bar.attempt .. ": ") or "") .. attempt_words(bar)
  end
  step_marks(out, scale, lane, mid)
  local first, last = lane.bars[1], lane.bars[n]
  if last then
    note(out, scale.x(first.t0), math.max(scale.x(last.t1 or last.t0), scale.x(last.t0) + 3), mid,
      cut(table.concat(words, ", "), 60))
  end
end

local WAIT_WORDS = { operator = "asked", approval = "approval", timer = "", answered = "answered" }

local function wait_row(out, scale, w, y)
  local mid = y + ROW_H // 2 + 2
  local prefix = WAIT_WORDS[w.kind]
  local label = (prefix ~= "" and (prefix .. ": ") or "") .. tostring(w.label)
  out[#out + 1] = string.format('<text class="t-wait" x="26" y="%d"><title>%s</title>%s</text>', mid + 4,
    esc(label), esc(cut(label, 42)))
  local x0, x1 = scale.x(w.t0), scale.x(w.t1 or w.t0)
  local answer = w.answer ~= nil and (tostring(w.answer) .. (w.source and (" (" .. tostring(w.source) .. ")") or ""))
  local tip = string.format("%s, %s%s", label, secs((w.t1 or w.t0) - w.t0), answer and (": " .. answer) or "")
  local data = string.format('class="bar wait" data-kind="wait" data-wait="%s"', w.kind)
  if w.kind == "answered" then
    out[#out + 1] = string.format('<g %s><title>%s</title>%s</g>', data, esc(tip), SHAPE.circle(x0, mid))
    x1 = x0 + 4
  else
    local colour = COLOR[w.kind] or COLOR.timer
    rect(out, x0, x1, mid - 5, 10, string.format('fill="%s"%s', colour,
      w.unfinished and string.format(' stroke="%s" stroke-dasharray="2 2"', COLOR.edge) or ""), data, tip)
  end
  local words = secs((w.t1 or w.t0) - w.t0) .. (answer and (", " .. answer) or "") ..
    (w.unfinished and ", unfinished" or "") .. (w.outcome and w.outcome ~= "ok" and (", " .. w.outcome) or "")
  note(out, x0, math.max(x1, x0 + 3), mid, cut(words, 50))
end

local RUN_STATUS = { done = "ok", aborted = "failed", interrupted = "failed", terminated = "failed" }

local function run_row(out, scale, r, y)
  local mid = y + ROW_H // 2 + 2
  local status = tostring(r.status or "unfinished")
  local label = string.format("%s: run %s", status, tostring(r.id))
  out[#out + 1] = string.format('<text class="t-run" x="4" y="%d"><title>%s (%s)</title>%s</text>', mid + 4,
    esc(label), esc(r.runbook), esc(cut(label, 46)))
  local lanes = r.lanes
  local cls, attrs = bar_style(RUN_STATUS[r.status] or (r.status and "failed" or "unfinished"))
  rect(out, scale.x(lanes.t0), scale.x(lanes.t1), mid - 2, 4, attrs,
    string.format('class="bar run %s" data-kind="run"', cls), "run " .. status)
  step_marks(out, scale, { id = "", marks = lanes.run.marks }, mid)
end

-- The rows of every run, top to bottom: the run, each step, its waits.
local function rows(runs)
  local list = {}
  for _, r in ipairs(runs) do
    list[#list + 1] = { draw = run_row, what = r }
    for _, lane in ipairs(r.lanes.steps) do
      list[#list + 1] = { draw = step_row, what = lane }
      for _, w in ipairs(lane.waits) do list[#list + 1] = { draw = wait_row, what = w } end
    end
  end
  return list
end

local function swatch(attrs, h)
  return function(x, y)
    return string.format('<rect x="%d" y="%d" width="22" height="%d" %s/>', x, y - h // 2, h, attrs)
  end
end

local function fill(colour) return string.format('fill="%s"', colour) end

local LEGEND = {
  { "ok", swatch(fill(COLOR.ok), 12) },
  { "failed", function(x, y) return swatch('fill="url(#rb-hatch)"', 12)(x, y) .. SHAPE.cross(x + 11, y) end },
  { "retried (attempt 2+)", function(x, y) return SHAPE.retry(x + 8, y) end },
  { "skipped", swatch(select(2, bar_style("skipped")), 12) },
  { "declined", swatch(fill(COLOR.declined), 12) },
  { "unfinished", swatch(select(2, bar_style("unfinished")), 12) },
  { "waiting for the operator", swatch(fill(COLOR.operator), 10) },
  { "waiting for an approver", swatch(fill(COLOR.approval), 10) },
  { "wait() / poll()", swatch(fill(COLOR.timer), 10) },
  { "answered at once", function(x, y) return SHAPE.circle(x + 8, y) end },
  { "approved", function(x, y) return SHAPE.diamond(x + 8, y, COLOR.approval) end },
  { "rejected / refused", function(x, y)
    return SHAPE.diamond(x + 8, y, "#ffffff", COLOR.failed) .. SHAPE.cross(x + 8, y, COLOR.failed)
  end },
  { "notified", function(x, y) return SHAPE.triangle(x + 8, y, COLOR.notify) end },
  { "notify failed", function(x, y) return SHAPE.triangle(x + 8, y, "#ffffff", COLOR.notify) end },
}

local function legend(out, y)
  local per_line, item_w = 6, (W - 16) // 6
  for i, item in ipairs(LEGEND) do
    local col, line = (i - 1) % per_line, (i - 1) // per_line
    local x, yy = 8 + col * item_w, y + line * 22
    out[#out + 1] = string.format('<g class="legend-item">%s<text class="legend" x="%d" y="%d">%s</text></g>',
      item[2](x, yy), x + 28, yy + 4, esc(item[1]))
  end
  return y + ((#LEGEND + per_line - 1) // per_line) * 22
end

-- The time scale over every run: x(t) in pixels of the plot.
local function scale_of(runs)
  local t0, t1
  for _, r in ipairs(runs) do
    t0 = math.min(t0 or r.lanes.t0, r.lanes.t0)
    t1 = math.max(t1 or r.lanes.t1, r.lanes.t1)
  end
  local span = math.max(t1 - t0, 0.001)
  -- (clamped: a hand-edited duration may reach before the first event)
  local function x(t)
    return math.floor(PLOT_X + math.max(0, math.min(1, (t - t0) / span)) * PLOT_W + 0.5)
  end
  return { t0 = t0, span = span, x = x }
end

function H.chart(runs)
  local scale, list = scale_of(runs), rows(runs)
  local bottom = TOP + #list * ROW_H + 4
  local body = {}
  body[#body + 1] = string.format('<rect id="rb-plot" x="%d" y="%d" width="%d" height="%d" fill="%s"/>',
    PLOT_X - 6, TOP - 6, PLOT_W + 12, bottom - TOP + 6, COLOR.plot)
  axis(body, scale, bottom)
  for i, row in ipairs(list) do
    local y = TOP + (i - 1) * ROW_H
    if i > 1 then
      body[#body + 1] = string.format('<line class="sep" x1="4" y1="%d" x2="%d" y2="%d"/>', y, W - 4, y)
    end
    row.draw(body, scale, row.what, y)
  end
  local height = legend(body, bottom + 24) + 8
  return table.concat({
    string.format('<svg id="rb-chart" width="%d" height="%d" viewBox="0 0 %d %d" ' ..
      'role="img" aria-label="timeline of steps and waits">', W, height, W, height),
    '<defs><pattern id="rb-hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">',
    string.format('<rect width="6" height="6" fill="%s"/><rect width="2" height="6" fill="%s"/></pattern></defs>',
      COLOR.failed, COLOR.stripe),
    table.concat(body, "\n"), "</svg>" }, "\n")
end

local CSS = [[
body { font: 14px/1.4 "DejaVu Sans", sans-serif; color: #212121; background: #ffffff; margin: 16px 24px; }
h1 { font-size: 22px; margin: 0 0 10px; }
h2 { font-size: 17px; margin: 22px 0 6px; }
.verify { margin: 4px 0; padding: 6px 10px; border-left: 6px solid; }
.verify.ok { border-color: #2e7d32; background: #edf7ee; }
.verify.bad { border-color: #c62828; background: #fdecea; }
.badge { font-weight: bold; }
code { font-family: "DejaVu Sans Mono", monospace; font-size: 12px; word-break: break-all; }
table { border-collapse: collapse; margin: 4px 0; }
th, td { border: 1px solid #d5dae0; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #eef1f5; }
tr.error td { background: #fdecea; }
svg text { font-family: "DejaVu Sans", sans-serif; fill: #212121; }
svg .tick, svg .axis, svg .note { font-size: 11px; fill: #616161; }
svg .t-step, svg .t-run { font-size: 12px; font-weight: bold; }
svg .t-wait { font-size: 12px; fill: #424242; }
svg .legend { font-size: 12px; }
svg .grid { stroke: #d5dae0; }
svg .sep { stroke: #e6e9ed; }
]]

local function verification(out, r)
  local v = r.verify
  if v.ok then
    out[#out + 1] = string.format('<p class="verify ok" data-ok="true"><span class="badge">chain ok</span>: ' ..
      '<code>%s</code>, %s lines, final hash <code class="hash">%s</code></p>', esc(r.path), esc(v.lines), esc(v.hash))
  else
    out[#out + 1] = string.format('<p class="verify bad" data-ok="false"><span class="badge">chain broken at ' ..
      'line %s</span>: <code>%s</code>: %s; the last line that verifies has hash <code class="hash">%s</code></p>',
      esc(v.bad_line), esc(r.path), esc(v.reason or "?"), esc(v.hash))
  end
end

local function summary(out, runs)
  out[#out + 1] = "<table id=\"runs\"><tr><th>Run</th><th>Runbook</th><th>Operator</th><th>Start (UTC)</th>" ..
    "<th>Duration</th><th>Status</th><th>Params</th></tr>"
  for _, r in ipairs(runs) do
    local ps = {}
    for _, p in ipairs(r.params) do ps[#ps + 1] = esc(p.name) .. "=" .. esc(p.value) end
    out[#out + 1] = string.format("<tr><td><code>%s</code></td><td>%s%s</td><td>%s on %s%s</td><td>%s</td>" ..
      "<td>%s</td><td>%s%s</td><td>%s</td></tr>", esc(r.id), esc(r.runbook),
      r.severity and (" (" .. esc(r.severity) .. ")") or "", esc(r.operator), esc(r.host),
      r.target and (", target " .. esc(r.target)) or "", esc(r.start), esc(report.duration(r.lanes.t1 - r.lanes.t0)),
      esc(r.status or "unfinished"), r.dry_run and " (dry run)" or "", table.concat(ps, ", "))
  end
  out[#out + 1] = "</table>"
end

local function time_of(ev) return esc((tostring(ev.ts):gsub("^%d+-%d+-%d+T", ""):gsub("Z$", ""))) end

local function actions(out, merged, several)
  out[#out + 1] = string.format('<table id="actions"><tr><th>Time (UTC)</th>%s<th>Step</th><th>Action</th>' ..
    "<th>Duration</th></tr>", several and "<th>Run</th>" or "")
  local any = false
  for _, m in ipairs(merged) do
    local ev = m.ev
    if ev.event == "call" and ev.primitive ~= "wait" and ev.primitive ~= "poll" then
      any = true
      out[#out + 1] = string.format('<tr%s><td>%s</td>%s<td>%s</td><td>%s</td><td>%s</td></tr>',
        ev.outcome == "ok" and "" or ' class="error"', time_of(ev),
        several and ("<td>" .. esc(m.run.runbook) .. "</td>") or "", esc(ev.step),
        esc(report.call_text(ev)), type(ev.duration) == "number" and esc(secs(ev.duration)) or "")
    end
  end
  if not any then out[#out + 1] = '<tr><td colspan="5">none recorded</td></tr>' end
  out[#out + 1] = "</table>"
end

local function events(out, merged, several)
  out[#out + 1] = string.format('<table id="events"><tr><th>Time (UTC)</th>%s<th>Event</th></tr>',
    several and "<th>Run</th>" or "")
  for _, m in ipairs(merged) do
    if m.ev.event ~= "param" then
      out[#out + 1] = string.format("<tr><td>%s</td>%s<td>%s</td></tr>", time_of(m.ev),
        several and ("<td>" .. esc(m.run.runbook) .. "</td>") or "", esc(report.describe(m.ev, true)))
    end
  end
  out[#out + 1] = "</table>"
end

-- The whole page for runs loaded by report.load.
function H.page(runs, opts)
  opts = opts or {}
  local first = runs[1] or {}
  local title = "Incident timeline: " .. tostring(opts.title or first.title or first.runbook or "runbook")
  local merged, several = report.merge(runs), #runs > 1
  local out = { "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
    -- (nothing may load: the page carries all it shows)
    "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
    "<title>" .. esc(title) .. "</title>", "<style>" .. CSS .. "</style>", "</head><body>",
    "<h1>" .. esc(title) .. "</h1>", '<section id="verification">' }
  for _, r in ipairs(runs) do verification(out, r) end
  out[#out + 1] = "</section>"
  summary(out, runs)
  out[#out + 1] = '<h2>Timeline</h2><figure id="timeline" style="margin:0">'
  out[#out + 1] = H.chart(runs)
  out[#out + 1] = "</figure><h2>Actions taken</h2>"
  actions(out, merged, several)
  out[#out + 1] = "<h2>Events</h2>"
  events(out, merged, several)
  out[#out + 1] = "</body></html>"
  return table.concat(out, "\n") .. "\n"
end

return H
