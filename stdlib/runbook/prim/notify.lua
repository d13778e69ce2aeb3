-- notify(text, {channel=, severity=, required=, quiet=}): tell people.
-- (quiet: no "notified ..." line; the caller says where it went.)
--
-- Channels come from the config file's `notify` table:
--   notify = {
--     ops   = { webhook = env("OPS_WEBHOOK_URL") },          -- Slack-compatible
--     pager = { command = { "/usr/local/bin/page", "--team", "db" } },
--   }
-- A webhook gets a JSON POST {"text": ...}; a command gets the text on
-- stdin and RUNBOOK_NOTIFY_SEVERITY / RUNBOOK_NOTIFY_CHANNEL in its
-- environment.  Each channel's answer is recorded; a failing channel is
-- reported and is fatal only with required = true.  In a dry run nothing
-- is sent.  The text sent is redacted like everything shown or recorded.
local cexec = require("runbook.exec")
local context = require("runbook.context")
local errors = require("runbook.errors")
local transcript = require("runbook.transcript")
local ui = require("runbook.ui")

local function channel_names(run, opts)
  local all = (run.config and run.config.notify) or {}
  local wanted = opts.channel
  if type(wanted) == "string" then wanted = { wanted } end
  if wanted == nil then
    wanted = {}
    for name in pairs(all) do wanted[#wanted + 1] = name end
    table.sort(wanted)
  end
  return wanted, all
end

local function send_webhook(ch, text, severity)
  local body = { text = (severity and ("[" .. severity .. "] ") or "") .. text }
  local r = require("runbook.prim.http").post(ch.webhook, { json = body, timeout = ch.timeout or 10,
    expect = false, cacert = ch.cacert })
  local ok = r.status >= 200 and r.status < 300
  return ok, { status = r.status, body = r.body:sub(1, 200) },
    not ok and string.format("webhook answered %d", r.status) or nil
end

local function send_command(ch, name, text, severity)
  local spec = { timeout = ch.timeout or 30, stdin = text,
    env = { RUNBOOK_NOTIFY_SEVERITY = severity or "", RUNBOOK_NOTIFY_CHANNEL = name } }
  for i, a in ipairs(ch.command) do spec[i] = a end
  local r = cexec.run(spec)
  return r.code == 0, { code = r.code, stdout = r.stdout:sub(1, 200), stderr = r.stderr:sub(1, 200) },
    r.code ~= 0 and string.format("command exited with code %d: %s", r.code, r.stderr:sub(1, 200)) or nil
end

return function(text, opts)
  if type(text) ~= "string" or text == "" then errors.usage("notify: expected the message text", "notify") end
  opts = opts or {}
  local run = context.need("notify")
  if run.phase ~= "execute" then errors.usage("notify: only inside a step", "notify") end
  -- What leaves the host is redacted like the screen and the record: a
  -- message built from a command's output or a param must not carry a
  -- secret to a chat channel or a pager.
  text = transcript.redact(text)
  local names, all = channel_names(run, opts)
  local results, failed = {}, {}
  for _, name in ipairs(names) do
    local ch = all[name]
    local res = { channel = name }
    if ch == nil then
      res.ok, res.error = false, "no such channel in the config's notify table"
    elseif run.dry_run then
      ui.print("  " .. ui.style("magenta", "would notify") .. " " .. name .. ": " .. text)
      res.ok, res.simulated = true, true
    else
      local ok, sent, answer, why = pcall(function()
        if ch.webhook then return send_webhook(ch, text, opts.severity) end
        if ch.command then return send_command(ch, name, text, opts.severity) end
        error("channel has neither webhook= nor command=", 0)
      end)
      if ok then res.ok, res.answer, res.error = sent, answer, why
      else res.ok, res.error = false, errors.message(sent) end
    end
    if not res.ok then failed[#failed + 1] = name .. ": " .. res.error end
    results[#results + 1] = res
  end
  if #names == 0 then
    failed[1] = "no notify channels configured (add a `notify` table to the config file; see docs/targets.md)"
  end
  if run.rec then
    run.rec:event("notify", { text = text, severity = opts.severity, channels = results,
      dry_run = run.dry_run or nil, step = run.step and run.step.id })
  end
  if #failed > 0 then
    local msg = "notify: " .. table.concat(failed, "; ")
    if opts.required then errors.raise("failed", msg, { primitive = "notify", channels = results }) end
    ui.log("warn", msg)
  elseif not run.dry_run and not opts.quiet then
    ui.print("  notified " .. table.concat(names, ", "))
  end
  return results
end
