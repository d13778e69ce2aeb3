-- runbook.files: the file verbs of a runbook (file.read, file.write,
-- file.list, file.stat, file.remove).
--
-- Each goes through api.call, so it is recorded as a `call` event, a
-- --scenario rule can replace it, and in a dry run a write or a removal
-- is shown as "would run" and simulated while a read runs for real.  What
-- a file holds is never recorded, only its path and size: a file read in
-- an incident is often a config holding a credential.
local errors = require("runbook.errors")
local sys = require("runbook.sys")

-- Why the call failed, "file.read /etc/x: No such file or directory".
local function failed(verb, path, err)
  local why = tostring(err):gsub("^" .. path:gsub("%p", "%%%0") .. ": ", "")
  return string.format("file.%s %s: %s", verb, path, why)
end

local function read_all(path)
  local f, err = io.open(path, "rb")
  if not f then error(failed("read", path, err), 0) end
  local text = f:read("a")
  f:close()
  return text
end

local function write_all(path, text, append)
  local f, err = io.open(path, append and "ab" or "wb")
  if not f then error(failed("write", path, err), 0) end
  local ok, werr = f:write(text)
  local cok, cerr = f:close()
  if not ok or not cok then error(failed("write", path, werr or cerr), 0) end
  return { bytes = #text, path = path }
end

-- One file verb: its path checked, the call recorded through api.call
-- (spec: describe, perform, summary, ...; args default to the path), a
-- failure raised as an error object at the runbook's line.
local function file_call(run, api, verb, path, spec)
  if type(path) ~= "string" or path == "" then errors.usage("file." .. verb .. ": expected a path", "file." .. verb) end
  spec.primitive = "file." .. verb
  spec.args = spec.args or { path = path }
  local ok, res = api.call(run, spec)
  if not ok then error(errors.from(res, spec.primitive, "failed"), 0) end
  return res
end

local function reads(run, api, G)
  function G.file.read(path, opts)
    opts = opts or {}
    return file_call(run, api, "read", path, { describe = "read " .. tostring(path),
      secret = opts.secret and true or nil,
      perform = function() return read_all(path) end,
      summary = function(text) return { bytes = #text } end,
      mark = function(text) require("runbook.record").secret(text) end,
      complete = function(r) return type(r) == "table" and (r.text or "") or tostring(r) end })
  end
  function G.file.list(dir)
    return file_call(run, api, "list", dir, { describe = "list " .. tostring(dir),
      perform = function()
        local names, err = sys.listdir(dir)
        if not names then error(failed("list", dir, err), 0) end
        return names
      end,
      summary = function(names) return { count = #names } end })
  end
  function G.file.stat(path)
    return file_call(run, api, "stat", path, { describe = "stat " .. tostring(path),
      perform = function() return sys.stat(path) or false end,
      summary = function(st) return st and { type = st.type, size = st.size } or { missing = true } end }) or nil
  end
end

local function changes(run, api, G)
  function G.file.write(path, text, opts)
    if type(text) ~= "string" then errors.usage("file.write: expected the text to write", "file.write") end
    opts = opts or {}
    return file_call(run, api, "write", path, { mutating = true,
      args = { path = path, bytes = #text, append = opts.append and true or nil, mode = opts.mode },
      describe = string.format("%s %d bytes to %s", opts.append and "append" or "write", #text, tostring(path)),
      perform = function()
        local r = write_all(path, text, opts.append)
        if opts.mode then sys.chmod(path, opts.mode) end
        return r
      end,
      stand_in = function() return { bytes = #text, path = path, dry_run = true } end,
      summary = function(r) return { bytes = r.bytes } end })
  end
  function G.file.remove(path)
    return file_call(run, api, "remove", path, { mutating = true, describe = "remove " .. tostring(path),
      perform = function()
        local done, err = os.remove(path)
        if not done then error(failed("remove", path, err), 0) end
        return { path = path }
      end,
      stand_in = function() return { path = path, dry_run = true } end })
  end
end

-- Installs G.file for one run.
return function(run, G, api)
  G.file = {}
  reads(run, api, G)
  changes(run, api, G)
end
