-- What tests/runbooks/secret_local.lua and secret_net.lua share
-- (require("lib.planted")): tests/e2e/test_secret_paths.py plants secrets
-- in files under -p dir=DIR and runs one step at a time with -p only=ID;
-- a step writes what it got to DIR/<name>.got, so the test can tell the
-- runbook had the value while nothing else showed or kept it.
local planted = {}

-- Whether the step with this id is to run (-p only=ID runs just one).
function planted.wanted(p, id)
  return p.only == nil or p.only == id
end

function planted.save(p, name, value)
  file.write(p.dir .. "/" .. name .. ".got", value)
end

-- The whole of the planted file DIR/<name>.
function planted.read(p, name)
  return file.read(p.dir .. "/" .. name)
end

return planted
