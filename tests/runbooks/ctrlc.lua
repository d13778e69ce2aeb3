-- Used by tests/cli/test_interactive.py: Ctrl-C while exec waits on a child
-- that has a child of its own.  The shell writes both pids into <dir>.
runbook { name = "ctrlc", title = "Interrupt a process group", severity = "P3" }
param("dir", { help = "where the pid files go", required = true })

step("Start a process tree", { id = "tree" }, function(p)
  exec { "sh", "-c",
    'sleep 300 & echo $! > "$1/grandchild.pid"; echo $$ > "$1/child.pid"; echo tree-started; wait',
    "sh", p.dir }
end)

step("After", { id = "after" }, function() log.info("after ran") end)
