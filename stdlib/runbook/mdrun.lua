-- runbook.mdrun: a markdown checklist as a runbook chunk for the engine.
--
--   local chunk, err = mdrun.load("runbooks/restore.md", env)
--
-- The document is read (at most 16 MiB), parsed (runbook.markdown) and
-- turned into its runbook with every step and item on the document's own
-- line (runbook.mdimport.to_aligned_lua), loaded in env under the file's
-- name: what the engine reports, a failed step or a bad value, names
-- FILE.md:LINE.  chunk() declares it as a Lua runbook's chunk would.
local markdown = require("runbook.markdown")
local mdimport = require("runbook.mdimport")

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

return M
