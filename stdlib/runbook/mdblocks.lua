-- runbook.mdblocks: a markdown document cut into the blocks a runbook is
-- made of, each with its line.
--
--   mdblocks.read(text, file) --> { blocks } or nil, "FILE:LINE: why"
--
-- Blocks: heading {level, text}, item {indent, ordered, number, check
-- (nil, " " or "x"), text} (a list item, with the lines that continue it),
-- fence {lang, attrs, lines, close}, table {rows}, para {text}, comment
-- {text} (an HTML comment, which may say `runbook: readonly`), and rule
-- (---).  A setext heading (a line underlined with === or ---) is a
-- heading; a block quote's lines are read as blocks of their own (a quoted
-- "> - [ ] Tell the team" is an item).  No HTML blocks but comments.
local M = {}

local function trim(s)
  local a = s:find("%S")
  if not a then return "" end
  local b = #s
  while s:find("^%s", b) do b = b - 1 end
  return s:sub(a, b)
end

-- Width of a line's indentation, a tab counting as four.
local function indent_of(line)
  local ws = line:match("^[ \t]*")
  local n = 0
  for c in ws:gmatch(".") do n = n + (c == "\t" and 4 - n % 4 or 1) end
  return n
end

local function fence_open(line)
  local ind, mark, info = line:match("^(%s*)(```+)%s*(.-)%s*$")
  if not mark then ind, mark, info = line:match("^(%s*)(~~~+)%s*(.-)%s*$") end
  if not mark or (mark:sub(1, 1) == "`" and info:find("`", 1, true)) then return nil end
  local lang = info:match("^([%w_+%-]+)") or ""
  local attrs = {}
  for a in (info:match("{(.-)}") or ""):gmatch("[%w_%-]+") do attrs[a:lower()] = true end
  return { mark = mark, lang = lang:lower(), attrs = attrs, indent = #ind }
end

-- A fence from line i: the block and the next line's index.
local function read_fence(lines, i, f, file)
  local body, j = {}, i + 1
  while j <= #lines do
    local l = lines[j]
    local close = l:match("^%s*(" .. (f.mark:sub(1, 1) == "`" and "`" or "~") .. "+)%s*$")
    if close and #close >= #f.mark then
      return { type = "fence", lang = f.lang, attrs = f.attrs, lines = body, line = i }, j + 1
    end
    body[#body + 1] = f.indent > 0 and l:gsub("^" .. string.rep(" ?", f.indent), "", 1) or l
    j = j + 1
  end
  return nil, string.format("%s:%d: the code block opened here is never closed (no closing %s)",
    file, i, f.mark)
end

local function read_comment(lines, i, file)
  local text, j = {}, i
  while j <= #lines do
    text[#text + 1] = lines[j]
    if lines[j]:find("-->", 1, true) then
      local all = table.concat(text, "\n")
      return { type = "comment", text = trim(all:match("<!%-%-(.-)%-%->") or ""), line = i }, j + 1
    end
    j = j + 1
  end
  return nil, string.format("%s:%d: the HTML comment opened here is never closed (no -->)", file, i)
end

local function read_table(lines, i)
  local rows, j = {}, i
  while j <= #lines and lines[j]:match("^%s*|") do
    local l = trim(lines[j]):gsub("^|", ""):gsub("|$", "")
    if not l:match("^[%s:|%-]+$") then                  -- not the |---|---| line
      local cells = {}
      for cell in (l .. "|"):gmatch("(.-)|") do cells[#cells + 1] = trim(cell) end
      rows[#rows + 1] = cells
    end
    j = j + 1
  end
  return { type = "table", rows = rows, line = i }, j
end

local function list_marker(line)
  local first = line:match("^%s*()")
  local c = line:sub(first, first)
  if not (c == "-" or c == "*" or c == "+" or c:match("%d")) then return nil end  -- most lines: no pattern tried
  local ind, num, delim, rest = line:match("^(%s*)(%d+)([.)])%s+(.*)$")
  if num then return indent_of(ind), true, tonumber(num), rest end
  ind, rest = line:match("^(%s*)[-*+]%s+(.*)$")
  if ind then return indent_of(ind), false, nil, rest end
  ind = line:match("^(%s*)[-*+]$")
  if ind then return indent_of(ind), false, nil, "" end
end

-- Whether line i (not blank) continues the item or paragraph before it.
local function continues(line)
  return not (line:match("^%s*#") or list_marker(line) or fence_open(line) or
    line:match("^%s*|") or line:match("^%s*<!%-%-") or line:match("^%s*[-*_][-*_%s]*$") and
    line:gsub("%s", ""):match("^([-*_])%1%1+$"))
end

local function read_item(lines, i)
  local indent, ordered, number, rest = list_marker(lines[i])
  local check, text = rest:match("^%[([ xX])%]%s*(.*)$")
  text = text or rest
  local j = i + 1
  while j <= #lines and lines[j]:match("%S") and continues(lines[j]) and indent_of(lines[j]) > indent do
    text = text .. " " .. trim(lines[j])
    j = j + 1
  end
  return { type = "item", indent = indent, ordered = ordered, number = number,
           check = check and check:lower(), text = trim(text), line = i }, j
end

local function read_para(lines, i)
  local text, j = { trim(lines[i]:gsub("^%s*>%s?", "")) }, i + 1
  while j <= #lines and lines[j]:match("%S") and continues(lines[j]) do
    text[#text + 1] = trim(lines[j]:gsub("^%s*>%s?", ""))
    j = j + 1
  end
  return { type = "para", text = table.concat(text, " "), line = i }, j
end

-- "Title" over "=====" (level 1) or "-----" (level 2).
local function setext(lines, i)
  local under = lines[i + 1]
  if not under or not continues(lines[i]) or lines[i]:match("^%s*>") then return nil end
  if under:match("^ ? ? ?=+%s*$") then return 1 end
  if under:match("^ ? ? ?%-%-+%s*$") then return 2 end
end

-- The block that starts at line i (not blank), and the next line's index.
local function block_at(lines, i, file)
  local l = lines[i]
  local level = setext(lines, i)
  if level then return { type = "heading", level = level, text = trim(l), line = i }, i + 2 end
  local hashes, htext = l:match("^%s?%s?%s?(#+)%s+(.-)%s*#*%s*$")
  if not hashes then hashes, htext = l:match("^%s?%s?%s?(#+)%s*$"), "" end
  if hashes and #hashes <= 6 then
    return { type = "heading", level = #hashes, text = htext, line = i }, i + 1
  end
  local f = fence_open(l)
  if f then return read_fence(lines, i, f, file) end
  if l:match("^%s*<!%-%-") then return read_comment(lines, i, file) end
  if l:match("^%s*|") then return read_table(lines, i) end
  if list_marker(l) then return read_item(lines, i) end
  if l:gsub("%s", ""):match("^([-*_])%1%1+$") then return { type = "rule", line = i }, i + 1 end
  return read_para(lines, i)
end

-- The lines of a block quote from line i, its "> " taken off (blank
-- lines where a line had only ">"), and the next line's index.
local function quoted(lines, i)
  local inner, j = {}, i
  while j <= #lines and lines[j]:match("^%s*>") do
    inner[j] = lines[j]:gsub("^%s*>%s?", "", 1)
    j = j + 1
  end
  return inner, j
end

-- The blocks of lines[first..last] (a table indexed by line number).
local function read_lines(lines, first, last, file, blocks)
  local i = first
  while i <= last do
    if not lines[i]:match("%S") then
      i = i + 1
    elseif lines[i]:match("^%s*>") then
      local inner, next_i = quoted(lines, i)
      -- outside the quote its blocks see blank lines: a fence opened in
      -- it and not closed there is unclosed
      local view = setmetatable(inner, { __index = function() return "" end, __len = function() return #lines end })
      local ok, err = read_lines(view, i, next_i - 1, file, blocks)
      if not ok then return nil, err end
      i = next_i
    else
      local b, next_i = block_at(lines, i, file)
      if not b then return nil, next_i end
      blocks[#blocks + 1] = b
      i = next_i
    end
  end
  return blocks
end

function M.read(text, file)
  local lines = {}
  for l in (text:sub(-1) == "\n" and text or text .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = l end
  return read_lines(lines, 1, #lines, file, {})
end

M.trim = trim
return M
