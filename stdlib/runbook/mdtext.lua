-- runbook.mdtext: a markdown document's text as written, made readable.
--
--   mdtext.normalize(text)  --> text with LF line ends, no BOM, and
--                              double-encoded UTF-8 repaired where the
--                              repair is unambiguous; the number of repairs
--
-- Wiki exports and copy-paste bring CRLF, a byte-order mark and mojibake:
-- UTF-8 read as Windows-1252 and written out again as UTF-8, so an em dash
-- (E2 80 94) becomes "â€”".  Each such run of characters is mapped back to
-- the bytes they came from; the run is replaced only when those bytes are
-- one valid UTF-8 character of two or more bytes, so text that merely
-- contains "Ã" or "â" stays as it is.
local M = {}

-- Windows-1252's 0x80-0x9f, by the code point each became.
local CP1252 = {
  [0x20AC] = 0x80, [0x201A] = 0x82, [0x0192] = 0x83, [0x201E] = 0x84, [0x2026] = 0x85,
  [0x2020] = 0x86, [0x2021] = 0x87, [0x02C6] = 0x88, [0x2030] = 0x89, [0x0160] = 0x8A,
  [0x2039] = 0x8B, [0x0152] = 0x8C, [0x017D] = 0x8E, [0x2018] = 0x91, [0x2019] = 0x92,
  [0x201C] = 0x93, [0x201D] = 0x94, [0x2022] = 0x95, [0x2013] = 0x96, [0x2014] = 0x97,
  [0x02DC] = 0x98, [0x2122] = 0x99, [0x0161] = 0x9A, [0x203A] = 0x9B, [0x0153] = 0x9C,
  [0x017E] = 0x9E, [0x0178] = 0x9F,
}

-- The byte a code point stood for when it came from Windows-1252 (or
-- Latin-1, for 0x81, 0x8d, 0x8f, 0x90, 0x9d, which 1252 leaves undefined).
local function byte_of(cp)
  if cp >= 0xA0 and cp <= 0xFF then return cp end
  if cp >= 0x80 and cp <= 0x9F then return cp end
  return CP1252[cp]
end

-- The characters of s from byte i on: code point and next index, or nil.
local function char_at(s, i)
  local ok, cp = pcall(utf8.codepoint, s, i)
  if not ok then return nil end
  return cp, i + #utf8.char(cp)
end

-- At i, a mojibake run: the repaired text and the index after the run.
local function repair_at(s, i)
  local lead, j = char_at(s, i)
  if not lead or lead < 0xC2 or lead > 0xF4 then return nil end
  local want = lead >= 0xF0 and 3 or lead >= 0xE0 and 2 or 1
  local bytes = { lead }
  for _ = 1, want do
    local cp, k = char_at(s, j)
    local b = cp and byte_of(cp)
    if not b or b < 0x80 or b > 0xBF then return nil end
    bytes[#bytes + 1] = b
    j = k
  end
  local text = string.char(table.unpack(bytes))
  if utf8.len(text) ~= 1 then return nil end
  return text, j
end

local function repair(s)
  if not s:find("\195", 1, true) then return s, 0 end    -- every lead is U+00C2-U+00F4: C3 xx
  local out, i, n, fixed = {}, 1, #s, 0
  while i <= n do
    local b = s:byte(i)
    local text, j
    if b == 0xC3 then text, j = repair_at(s, i) end
    if text then
      out[#out + 1] = text
      fixed = fixed + 1
      i = j
    else
      out[#out + 1] = string.char(b)
      i = i + 1
    end
  end
  return table.concat(out), fixed
end

function M.normalize(text)
  text = text:gsub("^\239\187\191", ""):gsub("\r\n?", "\n")
  if not utf8.len(text) then return text, 0 end      -- not UTF-8 at all: left as read
  return repair(text)
end

return M
