-- runbook.mdrun: a markdown checklist as a runbook chunk for the engine.
--
--   local chunk, err = mdrun.load("runbooks/restore.md", env)
--
-- The document is read (at most 16 MiB), parsed (runbook.markdown) and
-- turned into its runbook with every step and item on the document's own
-- line (runbook.mdimport.to_aligned_lua), loaded in env under the file's
-- name: what the engine reports, a failed step or a bad value, names
-- FILE.md:LINE.  chunk() declares it as a Lua runbook's chunk would.
local errors = require("runbook.errors")
local markdown = require("runbook.markdown")
local mdimport = require("runbook.mdimport")
local record = require("runbook.record")
local ui = require("runbook.ui")

local M = {}
local MAX_BYTES = 16 * 1024 * 1024

-- The document at path, read (at most MAX_BYTES) and parsed; or nil and
-- why ("FILE:LINE: ..." for a broken document).  runbook import reads
-- through it too.
function M.read(path)
  local f, oerr = io.open(path, "rb")
  if not f then return nil, oerr end
  local text = f:read(MAX_BYTES + 1) or ""
  f:close()
  if #text > MAX_BYTES then
    return nil, string.format("%s: over %d MiB: not a runbook", path, MAX_BYTES // (1024 * 1024))
  end
  return markdown.parse(text, path)
end

function M.load(path, env)
  local doc, perr = M.read(path)
  if not doc then return nil, perr end
  local chunk, lerr = load(mdimport.to_aligned_lua(doc), "@" .. path, "t", env)
  if not chunk then
    return nil, string.format("%s: the runbook made of it does not load (a bug of runbook): %s", path, lerr)
  end
  return function() return chunk(mdimport.helpers(env)) end, doc
end

-- The params of a followed checklist (mdimport's inline chunk): the
-- running runbook's value of the same name, else the document's default,
-- else asked once.
local function linked_params(env)
  return function(given, specs)
    local p = {}
    for _, spec in ipairs(specs) do
      local v = given[spec.name]
      if v == nil then v = spec.default end
      if v == nil then v = env.prompt("Value for " .. spec.name .. " (" .. spec.help .. ")", { secret = spec.secret }) end
      if spec.secret and v ~= nil then record.secret(v) end
      p[spec.name] = v
    end
    return p
  end
end

-- Where a link points: beside the running runbook's file.
local function beside(run, path)
  if path:sub(1, 1) == "/" then return path end
  local dir = (run.plan and run.plan.file or ""):match("^(.*)/[^/]*$")
  return (dir and (dir .. "/") or "") .. path:gsub("^%./", "")
end

local function run_linked(run, path, full, steps)
  run.following = run.following or {}
  run.following[full] = true
  for i, s in ipairs(steps) do
    ui.print(ui.style("bold", string.format("      -> %s %d/%d: %s", path, i, #steps, s.title)))
    if run.rec then run.rec:event("linked", { runbook = path, index = i, of = #steps, title = s.title,
      step = run.step and run.step.id }) end
    local ok, err = pcall(s.run)
    if not ok then
      run.following[full] = nil
      error(err, 0)
    end
  end
  run.following[full] = nil
end

-- checklist(path, {offer = text}): a markdown checklist's steps run here,
-- inside the running step, with its confirmations and records (a link of
-- a document, "[Rollback](./rollback.md)", followed).  With offer, the
-- operator is asked first ("not now" by default); a file that is not
-- there is named as the document's advice instead.  Returns whether it ran.
function M.checklist(run, path, opts)
  if type(path) ~= "string" or path == "" then errors.usage("checklist: expected a path", "checklist") end
  opts = opts or {}
  local full = beside(run, path)
  local f = io.open(full, "rb")
  if not f then
    if not opts.offer then errors.usage("checklist: " .. full .. ": no such file", "checklist") end
    run.env.log.info("next, as the document says: runbook run %s (%s)", path, opts.offer)
    return false
  end
  f:close()
  if opts.offer and run.env.choose(string.format("Run the linked runbook %s now (%s)?", path, opts.offer),
      { "run it now", "not now" }, { default = "not now" }) ~= "run it now" then
    return false
  end
  if full == (run.plan and run.plan.file) or (run.following or {})[full] then
    errors.usage("checklist: " .. path .. " is already running (the documents link in a circle)", "checklist")
  end
  local doc, err = M.read(full)
  if not doc then errors.usage("checklist: " .. err, "checklist") end
  local chunk = assert(load(mdimport.to_aligned_lua(doc, true), "@" .. full, "t", run.env))
  local helpers = table.pack(mdimport.helpers(run.env))
  helpers[helpers.n + 1], helpers[helpers.n + 2] = linked_params(run.env), run.params or {}
  run_linked(run, path, full, chunk(table.unpack(helpers, 1, helpers.n + 2)))
  return true
end

return M
