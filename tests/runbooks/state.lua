-- Used by tests/cli/test_state.py: `state` recorded at step ends and
-- restored by --resume.  Step "use" fails until the file <dir>/allow exists.
runbook { name = "state", title = "State across a resume", severity = "P3" }
param("dir", { help = "where the allow file goes", required = true })
param("token", { help = "a secret kept in state", secret = true, default = "tok-Secret-4242-xyz" })

step("Collect", { id = "collect" }, function(p)
  state.count = 3
  state.items = { "a", "b", { name = "c", ratio = 0.25 } }
  state.token = p.token                   -- hidden whole: comes back nil
  state.note = "token is " .. p.token     -- hidden in part: comes back as recorded
  state.gone = true
end)

step("Change", { id = "change" }, function()
  state.count = state.count + 1
  state.gone = nil
end)

step("Use", { id = "use" }, function(p)
  print("@seen=" .. json.encode({ count = state.count, items = state.items, note = state.note,
    hidden_whole = state.token == nil and "(nil)" or "(set)", gone = state.gone == nil and "(nil)" or "(set)" }))
  local r = exec { "test", "-e", p.dir .. "/allow", readonly = true, check = false }
  if r.code ~= 0 then error("use is not allowed yet", 0) end
end)
