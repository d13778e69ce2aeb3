-- deploy: what is deployed, what was deployed before, and going back.
--
--   local deploy = require("deploy")
--
-- The target's `releases` table (docs/targets.md; the run's target, or
-- opts.target in every function that takes opts) names the release
-- directory and how releases are kept:
--   releases = { dir = "/srv/app", layout = "git" }
--     dir is a git checkout; a deployment is a commit on HEAD's
--     first-parent history, the newest being what runs.
--   releases = { dir = "/srv/app", layout = "symlink" }
--     dir/releases/<id> are the releases (ids sort oldest to newest, as
--     timestamps or version numbers do) and dir/current points at one.
--
-- deploy.list(opts) -> d
--   The recent deployments, newest first: d = { layout, dir, items = {
--   { id, short, date, author, subject, current = bool }, ... },
--   current = the item running now }.  opts.limit (default 10).  Reads only
--   (exec readonly: runs in a dry run).
--     local d = deploy.list()
--     for _, it in ipairs(d.items) do log.info("%s", deploy.describe(it)) end
--
-- deploy.previous(d) -> item
--   The deployment before the current one, or an error saying there is none.
--
-- deploy.find(d, id) -> item
--   The deployment with that id (a commit may be given by a unique prefix,
--   or any revision git knows, even older than the list).
--
-- deploy.activate(item, opts) -> { dry_run = bool }
--   Makes item the running release, and reads it back to check:
--   git: `git -C dir checkout --detach <commit>`, refused while tracked
--   files have local changes.  Why checkout --detach rather than reset
--   --hard or revert: it moves no branch and rewrites nothing, so the bad
--   commit is still on the branch for the post-mortem and going forward
--   again is one more checkout; it never discards a local edit (reset
--   --hard would); and it needs no commit identity or push (revert would).
--   symlink: `ln -sfn releases/<id> dir/.current.tmp-<rand>` then
--   `mv -T` over dir/current: rename(2) replaces the link in one step, so
--   nothing ever sees dir/current missing or half-written.
--     deploy.activate(deploy.find(d, "20250301-1200"))
--
-- deploy.rollback(opts) -> { layout, dir, reverted = item, restored = item, dry_run }
--   list + previous (or find(opts.to)) + activate, logged as
--   "rollback: reverted <id> ..., restored <id> ...".
--     local r = deploy.rollback()
--     log.info("now running %s", r.restored.short)
--
-- deploy.describe(item) -> "a1b2c3d 2025-03-01 alice: fix the login form"
local errors = require("runbook.errors")
local verbs = require("runbook.verbs")
local exec, log, target = verbs.exec, verbs.log, verbs.target

local deploy = {}

local SEP = "\31"   -- git log field separator (%x1f): never in a subject line

local function config(opts)
  local t = (opts and opts.target) or (type(target) == "table" and target) or {}
  local cfg = t.releases
  if type(cfg) ~= "table" or type(cfg.dir) ~= "string" or cfg.dir == "" then
    errors.raise("failed", "deploy: no release directory for this target (add targets.<name>.releases = " ..
      "{ dir = \"/srv/app\", layout = \"git\" | \"symlink\" } to the config; see docs/targets.md)", { primitive = "deploy" })
  end
  local layout = cfg.layout or "git"
  if layout ~= "git" and layout ~= "symlink" then
    errors.raise("usage", string.format("deploy: releases.layout %q is not \"git\" or \"symlink\"", tostring(layout)), { primitive = "deploy" })
  end
  return cfg.dir:gsub("/+$", ""), layout
end

local function read(argv)
  argv.readonly, argv.check, argv.quiet, argv.timeout = true, false, true, argv.timeout or 30
  local r = exec(argv)
  return r, (r.stdout or ""):gsub("%s+$", "")
end

local function git(dir, ...)
  local r, out = read { "git", "-C", dir, ... }
  if r.code ~= 0 then
    error(string.format("deploy: git %s in %s failed (exit %d: %s; is %s a git checkout?)",
      (...), dir, r.code, (r.stderr or ""):gsub("%s+$", ""):sub(1, 200), dir), 0)
  end
  return out
end

local function git_items(dir, rev, limit)
  local out = git(dir, "log", "--first-parent", "-n", tostring(limit),
    "--format=%H%x1f%h%x1f%aI%x1f%an%x1f%s", rev, "--")
  local items = {}
  for line in out:gmatch("[^\n]+") do
    local f = {}
    for field in (line .. SEP):gmatch("(.-)" .. SEP) do f[#f + 1] = field end
    if #f >= 5 then
      items[#items + 1] = { id = f[1], short = f[2], date = f[3], author = f[4], subject = f[5] }
    end
  end
  return items
end

-- "v1.10" after "v1.9": digit runs compare as numbers.
local function natural_less(a, b)
  local ia, ib = 1, 1
  while ia <= #a and ib <= #b do
    local da, db = a:match("^%d+", ia), b:match("^%d+", ib)
    if da and db then
      local na, nb = tonumber(da), tonumber(db)
      if na ~= nb then return na < nb end
      ia, ib = ia + #da, ib + #db
    else
      local ca, cb = a:sub(ia, ia), b:sub(ib, ib)
      if ca ~= cb then return ca < cb end
      ia, ib = ia + 1, ib + 1
    end
  end
  return #a - ia < #b - ib
end
deploy.natural_less = natural_less

local function symlink_list(dir, limit)
  local r, link = read { "readlink", dir .. "/current" }
  if r.code ~= 0 then
    error(string.format("deploy: %s/current is not a symlink (readlink: %s; is releases.layout " ..
      "right?)", dir, (r.stderr or ""):gsub("%s+$", "")), 0)
  end
  local lr, names = read { "ls", "-1p", dir .. "/releases" }   -- -p: directories end in "/"
  if lr.code ~= 0 then
    error(string.format("deploy: cannot list %s/releases (%s)", dir, (lr.stderr or ""):gsub("%s+$", "")), 0)
  end
  local ids = {}
  names = names .. "\n"
  for name in names:gmatch("([^\n]+)/\n") do ids[#ids + 1] = name end
  table.sort(ids, function(a, b) return natural_less(b, a) end)   -- newest first
  local current_id = link:gsub("/+$", ""):match("([^/]+)$")
  local items, current = {}, nil
  for _, id in ipairs(ids) do
    local it = { id = id, short = id, current = id == current_id }
    if it.current then current = it end
    if #items < limit or it.current then items[#items + 1] = it end
  end
  return items, current, link
end

function deploy.list(opts)
  local dir, layout = config(opts)
  local limit = (opts and opts.limit) or 10
  local d = { layout = layout, dir = dir }
  if layout == "git" then
    d.items = git_items(dir, "HEAD", limit)
    if #d.items == 0 then errors.raise("usage", string.format("deploy: %s has no commits", dir), { primitive = "deploy" }) end
    d.items[1].current = true
    d.current = d.items[1]
  else
    d.items, d.current, d.link = symlink_list(dir, limit)
    if d.current == nil then
      errors.raise("usage", string.format("deploy: %s/current points at %s, which is not in %s/releases", dir,
        d.link, dir), { primitive = "deploy" })
    end
  end
  return d
end

function deploy.describe(it)
  if it.date then
    return string.format("%s %s %s: %s", it.short, it.date:sub(1, 10), it.author or "?", it.subject or "")
  end
  return it.id
end

function deploy.previous(d)
  for i, it in ipairs(d.items) do
    if it.current then
      local prev = d.items[i + 1]
      if prev == nil then
        errors.raise("failed", string.format("deploy: no deployment before %s in %s (it is the oldest one listed)",
          it.short, d.dir), { primitive = "deploy" })
      end
      return prev
    end
  end
  errors.raise("failed", "deploy: the current deployment is not in the list", { primitive = "deploy" })
end

function deploy.find(d, id)
  id = tostring(id or "")
  if id == "" then errors.raise("usage", "deploy.find: which deployment? (an id from deploy.list)", { primitive = "deploy" }) end
  local found
  for _, it in ipairs(d.items) do
    if it.id == id or (d.layout == "git" and #id >= 4 and it.id:sub(1, #id) == id) then
      if found and found ~= it then errors.raise("usage", string.format("deploy: %q names more than one commit", id), { primitive = "deploy" }) end
      found = it
    end
  end
  if found then return found end
  if d.layout == "git" then
    local ok, items = pcall(git_items, d.dir, id .. "^{commit}", 1)
    if ok and items[1] then
      items[1].current = items[1].id == d.current.id
      return items[1]
    end
  end
  errors.raise("failed", string.format("deploy: no deployment %q in %s", id, d.dir), { primitive = "deploy" })
end

local function activate_git(dir, it)
  local dirty = git(dir, "status", "--porcelain", "--untracked-files=no")
  if dirty ~= "" then
    error(string.format("deploy: %s has local changes to tracked files; refusing to check out " ..
      "another release over them (look with `git -C %s status`, then commit, stash or discard them)",
      dir, dir), 0)
  end
  local r = exec { "git", "-C", dir, "checkout", "--detach", "--quiet", it.id, timeout = 120 }
  if r.dry_run then return { dry_run = true } end
  local head = git(dir, "rev-parse", "HEAD")
  if head ~= it.id then
    error(string.format("deploy: after the checkout %s is at %s, not %s", dir, head, it.id), 0)
  end
  return { dry_run = false }
end

local function activate_symlink(dir, it)
  local _, link = read { "readlink", dir .. "/current" }
  -- keep the link's style: absolute stays absolute, relative stays relative
  local dest = link:sub(1, 1) == "/" and (dir .. "/releases/" .. it.id) or ("releases/" .. it.id)
  local tmp = string.format("%s/.current.tmp-%d-%04x", dir, os.time(), math.random(0, 0xffff))
  local r = exec { "ln", "-sfn", dest, tmp }
  local ok, err = pcall(exec, { "mv", "-T", tmp, dir .. "/current" })
  if not ok then
    pcall(exec, { "rm", "-f", tmp })
    error(err, 0)
  end
  if r.dry_run then return { dry_run = true } end
  local _, now = read { "readlink", dir .. "/current" }
  if now ~= dest then
    error(string.format("deploy: %s/current points at %s after the switch, not %s", dir, now, dest), 0)
  end
  return { dry_run = false }
end

function deploy.activate(it, opts)
  local dir, layout = config(opts)
  if type(it) ~= "table" or it.id == nil then
    errors.raise("usage", "deploy.activate: expected a deployment item (from deploy.list/find/previous)", { primitive = "deploy" })
  end
  if layout == "git" then return activate_git(dir, it) end
  return activate_symlink(dir, it)
end

function deploy.rollback(opts)
  opts = opts or {}
  local d = deploy.list({ limit = opts.limit, target = opts.target })
  local to = opts.to and deploy.find(d, opts.to) or deploy.previous(d)
  if to.id == d.current.id then
    errors.raise("failed", string.format("deploy: %s is already the current deployment", to.short), { primitive = "deploy" })
  end
  local res = deploy.activate(to, { target = opts.target })
  log.info("rollback%s: reverted %s, restored %s", res.dry_run and " (dry run)" or "",
    deploy.describe(d.current), deploy.describe(to))
  return { layout = d.layout, dir = d.dir, reverted = d.current, restored = to, dry_run = res.dry_run }
end

return deploy
