-- runbook.shellwords: what a command line from a markdown runbook does.
--
--   shellwords.split(line)      --> { "curl", "-fsS", "https://x" } or nil, why
--   shellwords.classify(line)   --> "read" | "write" | "destructive", why
--
-- split is a shell's word splitting without expansion: quotes, backslashes,
-- and the operators | || && ; as words of their own, so a line with an
-- unclosed quote is refused with the column.  classify looks at every
-- command of a pipeline or list and takes the most dangerous: a read runs
-- without asking (and for real in a dry run), a write is confirmed (and
-- only shown in a dry run), a destructive one needs the typed
-- confirmation.  Unknown programs are writes: asking once too often is
-- the safe mistake.
local M = {}

local OPERATORS = { ["|"] = true, ["||"] = true, ["&&"] = true, [";"] = true, ["&"] = true }

-- The word that starts at i of line (not a blank): its text, where the next
-- word may start, or nil and the column of an unclosed quote.  Runs of
-- plain characters are taken whole (a pattern), quotes and backslashes
-- one by one.
local function word_at(line, i)
  local out = {}
  local op = not line:match("^&>", i) and line:match("^[|&;]+", i)
  if op then return op, i + #op end
  local start = i
  while true do
    local run = line:match("^[^%s'\"\\|&;]+", i)
    if run then
      out[#out + 1] = run
      i = i + #run
    end
    local c = line:sub(i, i)
    if c == "'" then
      local close = line:find("'", i + 1, true)
      if not close then return nil, i end
      out[#out + 1] = line:sub(i + 1, close - 1)
      i = close + 1
    elseif c == '"' then
      local j = i + 1
      while j <= #line and line:sub(j, j) ~= '"' do j = j + (line:sub(j, j) == "\\" and 2 or 1) end
      if j > #line then return nil, i end
      out[#out + 1] = line:sub(i + 1, j - 1):gsub('\\(["\\$`])', "%1")
      i = j + 1
    elseif c == "\\" then
      out[#out + 1] = line:sub(i + 1, i + 1)
      i = i + 2
    elseif c == "&" and (i == start or line:sub(i - 1, i - 1) == ">") then   -- 2>&1, &>f
      out[#out + 1] = c
      i = i + 1
    else
      break                           -- a blank, an operator or the end
    end
  end
  return table.concat(out), i
end

function M.split(line)
  local words, i = {}, 1
  while true do
    i = line:find("%S", i)
    if not i or line:sub(i, i) == "#" then break end     -- a comment ends the line
    local w, next_i = word_at(line, i)
    if not w then return nil, string.format("unclosed quote at column %d", next_i) end
    words[#words + 1] = w
    i = next_i
  end
  return words
end

-- The commands of a split line: lists of words between operators.
local function commands(words)
  local list, cur = {}, {}
  for _, w in ipairs(words) do
    if OPERATORS[w] then
      if #cur > 0 then list[#list + 1] = cur end
      cur = {}
    else
      cur[#cur + 1] = w
    end
  end
  if #cur > 0 then list[#list + 1] = cur end
  return list
end

-- Programs that only look: any arguments.
local READERS = {}
for w in ([[cat less more head tail grep egrep fgrep zgrep rg awk jq yq wc sort uniq cut tr
  df du free uptime ps pgrep top htop vmstat iostat mpstat sar ls stat file find which whereis
  id whoami hostname uname date env printenv echo printf true test dig nslookup host ping
  traceroute tracepath mtr ss netstat lsof nc curl-health getent realpath readlink basename
  dirname md5sum sha256sum diff cmp column nproc lscpu lsblk blkid mount findmnt
  journalctl dmesg last w who pg_isready Get-Service Get-Process Get-EventLog Get-WinEvent
  Get-Content Get-ChildItem Test-NetConnection Resolve-DnsName]]):gmatch("%S+") do READERS[w] = true end

-- Programs whose first argument says: the subcommands that only look.
local SUBREADS = {
  systemctl = "status is-active is-enabled is-failed show list-units list-timers cat list-unit-files",
  git = "log status diff show branch remote rev-parse describe blame shortlog tag fetch",
  docker = "ps logs inspect stats top images version info events port",
  ["docker-compose"] = "ps logs config top images version",
  kubectl = "get describe logs top explain version api-resources cluster-info auth",
  pm2 = "list ls l status jlist prettylist show describe info logs monit env ping",
  supervisorctl = "status avail pid tail",
  nginx = "-t -T -v -V",
  openssl = "s_client x509 verify version",
  certbot = "certificates",
  helm = "list ls status get history show version",
  systemd = "", service = "", npm = "ls list view outdated",
}

-- What makes a line destructive wherever it stands (a pipeline, a
-- quoted -c "..."): by the word it starts with, patterns and the words
-- said of each.  Looked up by the line's words, so a line costs a pass
-- over its words, not a search per pattern.
local DESTRUCTIVE = {
  flushall = { { "%f[%a]flushall%f[%A]", "FLUSHALL" } },
  flushdb = { { "%f[%a]flushdb%f[%A]", "FLUSHDB" } },
  pg_terminate_backend = { { "pg_terminate_backend", "pg_terminate_backend" } },
  drop = { { "%f[%a]drop%s+%a", "DROP" } }, truncate = { { "%f[%a]truncate%s+%a", "TRUNCATE" } },
  delete = { { "%f[%a]delete%s+from%f[%A]", "DELETE FROM" } },
  dropdb = { { "%f[%a]dropdb%f[%A]", "dropdb" } },
  pg_restore = { { "%f[%a]pg_restore%f[%A]", "pg_restore (a restore)" } },
  mysql = { { "%f[%a]mysql%f[%A][^|]*<", "a mysql restore" } },
  kill = { { "%f[%a]kill%s+%-9", "kill -9" }, { "%f[%a]kill%s+%-kill", "kill -KILL" } },
  reset = { { "git%s+reset%s+%-%-hard", "git reset --hard" } },
  push = { { "push%s+[^|]*%-%-force", "git push --force" }, { "push%s+%-f%f[%A]", "git push -f" } },
  prune = { { "system%s+prune", "docker system prune" } },
  volume = { { "volume%s+rm%f[%A]", "docker volume rm" } },
  kubectl = { { "kubectl%s+delete", "kubectl delete" } },
  rm = { { "%f[%a]rm%s+%-%a*[rR]", "rm -r" } }, mkfs = { { "%f[%a]mkfs", "mkfs" } },
  dd = { { "%f[%a]dd%s+if=", "dd" } }, wipefs = { { "%f[%a]wipefs%f[%A]", "wipefs" } },
  shred = { { "%f[%a]shred%f[%A]", "shred" } },
}

-- The destructive thing low (a lower-case line) does, or nil.
local function destructive(low)
  for word in low:gmatch("[%a_][%w_]*") do
    for _, d in ipairs(DESTRUCTIVE[word] or {}) do
      if low:find(d[1]) then return d[2] end
    end
  end
end

-- sudo, env assignments and a leading `time`/`nice` say nothing of what a
-- command does: the program is the word after them.
local function program_of(cmd)
  local i = 1
  while cmd[i] and (cmd[i] == "sudo" or cmd[i] == "time" or cmd[i] == "nice" or cmd[i] == "env"
      or cmd[i]:match("^%-") and (cmd[i - 1] == "sudo" or cmd[i - 1] == "env")
      or cmd[i]:match("^[%a_][%w_]*=")) do
    i = i + 1
  end
  return cmd[i] and cmd[i]:match("[^/]*$"), i
end

-- curl and wget read unless told to send.
local function http_reads(cmd, first)
  for i = first + 1, #cmd do
    local a = cmd[i]
    if a:match("^%-X") or a:match("^%-%-request") then
      local m = (a:match("^%-X(.+)") or cmd[i + 1] or ""):upper()
      if m ~= "GET" and m ~= "HEAD" then return false end
    elseif a:match("^%-d") or a:match("^%-%-data") or a:match("^%-F") or a:match("^%-%-form")
        or a:match("^%-T") or a:match("^%-%-upload") or a:match("^%-%-post") or a == "--json" then
      return false
    end
  end
  return true
end

-- A Redis command is a read when Redis itself would say so; these are the
-- ones a runbook reads with.
local REDIS_READS = {}
for w in ("ping info get mget exists ttl pttl type strlen llen lrange hget hgetall hlen hkeys " ..
    "smembers scard zrange zcard zscore keys scan dbsize time client slowlog memory config " ..
    "xlen xrange xinfo latency role lastsave monitor"):gmatch("%S+") do REDIS_READS[w] = true end

local function redis_reads(cmd, first)
  local i = first + 1
  while cmd[i] and cmd[i]:match("^%-") do
    i = i + ((cmd[i]:match("^%-[hpanu]$") or cmd[i] == "--user" or cmd[i] == "--pass") and 2 or 1)
  end
  local verb = (cmd[i] or "ping"):lower()
  if verb == "config" or verb == "client" then
    return (cmd[i + 1] or ""):lower() == "get" or (cmd[i + 1] or ""):lower() == "list"
  end
  return REDIS_READS[verb] == true
end

local SQL_READ = { select = true, show = true, explain = true, with = true, table = true, values = true }

-- psql -c "SELECT ..." reads; psql with no -c or -f is an interactive
-- session, which a runbook cannot drive: a write, so it is asked.
local function psql_reads(cmd, first)
  for i = first + 1, #cmd do
    -- -c SQL, -cSQL, --command SQL, and a cluster of flags ending in c (-Atc SQL)
    local q = cmd[i]:match("^%-c(.+)") or (cmd[i]:match("^%-%a*c$") or cmd[i] == "--command") and cmd[i + 1]
    if q then return M.sql_class(q) == "read" end
    if cmd[i]:match("^\\") then return true end
  end
  return false
end

function M.sql_class(sql)
  local low = sql:lower()
  local hit = destructive(low)
  if hit then return "destructive", hit end
  for stmt in (low .. ";"):gmatch("([^;]*);") do
    local verb = stmt:match("^%s*(%a+)")
    if verb and not SQL_READ[verb] then return "write" end
    if verb == "with" and (stmt:find("%f[%a]insert%f[%A]") or stmt:find("%f[%a]update%f[%A]")
        or stmt:find("%f[%a]delete%f[%A]")) then
      return "write"
    end
  end
  return "read"
end

local function sub_reads(prog, cmd, first)
  local allowed = SUBREADS[prog]
  local sub = cmd[first + 1] or ""
  if prog == "docker" and sub == "compose" then
    prog, sub = "docker-compose", cmd[first + 2] or ""
    allowed = SUBREADS[prog]
  end
  if sub == "--help" or sub == "--version" then return true end
  for w in allowed:gmatch("%S+") do
    if w == sub then return true end
  end
  return false
end

-- One command of a line: its class.
local function command_class(cmd)
  local prog, first = program_of(cmd)
  if not prog then return "read" end
  if prog == "curl" or prog == "wget" then return http_reads(cmd, first) and "read" or "write" end
  if prog == "redis-cli" then return redis_reads(cmd, first) and "read" or "write" end
  if prog == "psql" then return psql_reads(cmd, first) and "read" or "write" end
  if prog == "sed" then
    for i = first + 1, #cmd do if cmd[i]:match("^%-i") then return "write" end end
    return "read"
  end
  if prog == "find" then
    for i = first + 1, #cmd do
      if cmd[i] == "-delete" or cmd[i] == "-exec" or cmd[i] == "-execdir" then return "write" end
    end
    return "read"
  end
  if READERS[prog] then return "read" end
  if SUBREADS[prog] then return sub_reads(prog, cmd, first) and "read" or "write" end
  return "write"
end

local RANK = { read = 1, write = 2, destructive = 3 }

-- Whether the split line writes a file through a redirect (not to
-- /dev/null, not 2>&1).
local function redirects(words)
  for i, w in ipairs(words) do
    local target = w:match("^%d?>>?(.*)$") or w:match("^&>>?(.*)$")
    if target and not target:match("^&%d") then
      if target == "" then target = words[i + 1] or "" end
      if target ~= "/dev/null" then return true end
    end
  end
  return false
end

-- The class of a whole line, and a short reason when it is not a read.
-- words: the line already split, when the caller has it.
function M.classify(line, words)
  local hit = destructive(line:lower())
  if hit then return "destructive", hit end
  local err
  if not words then words, err = M.split(line) end
  if not words then return "write", err end
  local class, why = "read", nil
  for _, cmd in ipairs(commands(words)) do
    local c = command_class(cmd)
    if RANK[c] > RANK[class] then class, why = c, program_of(cmd) end
  end
  if class == "read" and redirects(words) then class, why = "write", "a redirect to a file" end
  return class, why
end

return M
