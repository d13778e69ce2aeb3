-- verify-undo: a dangerous step with a verification and an undo.
runbook { name = "verify-undo", title = "Change, verify, undo on failure", severity = "P2" }
param("dir", { help = "working directory", default = "/tmp/runbook-example" })

step("Switch the config", {
  id = "switch",
  dangerous = true,                       -- the operator confirms first
  verify = function(p)                    -- false fails the step
    local config = p.dir .. "/config"
    local text = file.stat(config) and file.read(config) or ""
    return text:find("v2") ~= nil, "config does not say v2"
  end,
  undo = function(p)                      -- offered after a failure
    exec { "cp", p.dir .. "/config.bak", p.dir .. "/config" }
  end,
}, function(p)
  exec { "mkdir", "-p", p.dir }
  sh("echo v1 > " .. p.dir .. "/config && cp " .. p.dir .. "/config " .. p.dir .. "/config.bak")
  sh("echo v2 > " .. p.dir .. "/config")
end)
