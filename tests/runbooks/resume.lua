-- Used by tests/cli/test_run.py: --start-at and --resume.  Step "three"
-- fails until the file <dir>/allow exists.
runbook { name = "resume", title = "Start at, resume", severity = "P3" }
param("dir", { help = "where the marks go", required = true })
param("color", { help = "a value the resumed run must keep", default = "blue" })

local function mark(p, name)
  file.write(p.dir .. "/" .. name, p.color .. "\n", { append = true })
end

step("One", { id = "one" }, function(p) mark(p, "one") end)
step("Two", { id = "two" }, function(p) mark(p, "two") end)
step("Three", { id = "three" }, function(p)
  if not file.stat(p.dir .. "/allow") then error("three is not allowed yet") end
  mark(p, "three")
end)
step("Four", { id = "four" }, function(p) mark(p, "four") end)
