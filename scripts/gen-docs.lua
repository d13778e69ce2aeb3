-- scripts/gen-docs.lua [--check] [SOURCE_DIR]: write the generated parts
-- of docs/authoring.md from stdlib/runbook/help.lua (the text `help()`
-- prints in the REPL).  Each part sits between
--   <!-- help:ID begin: generated from stdlib/runbook/help.lua, do not edit -->
--   <!-- help:ID end -->
-- With --check it changes nothing and exits 1 naming each part that
-- differs (the test unit/help_docs.lua).  Run by the stock lua5.4:
-- `cmake --build build --target docs`.
local check = arg[1] == "--check"
local root = arg[check and 2 or 1] or os.getenv("RB_SOURCE_DIR") or "."
package.path = root .. "/stdlib/?.lua;" .. package.path
local help = require("runbook.help")

local page = root .. "/docs/authoring.md"
local f = assert(io.open(page, "rb"))
local text = f:read("a")
f:close()

local drift = {}
for _, id in ipairs(help.BLOCK_IDS) do
  local open = "<!-- help:" .. id .. " begin: generated from stdlib/runbook/help.lua, do not edit -->\n"
  local close = "\n<!-- help:" .. id .. " end -->"
  local a, b = text:find(open, 1, true)
  local c, d = text:find(close, b or 1, true)
  if not a or not c then
    io.stderr:write(string.format("%s: no generated part %q (its begin and end comments are missing)\n", page, id))
    os.exit(2)
  end
  local want = help.markdown(id)
  if text:sub(b + 1, c - 1) ~= want then
    drift[#drift + 1] = id
    text = text:sub(1, b) .. want .. text:sub(c)
  end
end

if check then
  if #drift > 0 then
    io.stderr:write(string.format("%s: the part(s) %s differ from stdlib/runbook/help.lua: " ..
      "edit help.lua, then run `cmake --build build --target docs`\n", page, table.concat(drift, ", ")))
    os.exit(1)
  end
  print("docs/authoring.md matches stdlib/runbook/help.lua (" .. table.concat(help.BLOCK_IDS, ", ") .. ")")
  os.exit(0)
end
if #drift > 0 then
  local out = assert(io.open(page, "wb"))
  out:write(text)
  out:close()
  print("rewrote " .. table.concat(drift, ", ") .. " in " .. page)
end
