-- Used by tests/cli/test_run.py: top-level code runs while the runbook is
-- declared, and a primitive called there must refuse to touch the world.
runbook { name = "declare", title = "Touches the world while declaring", severity = "P3" }
step("Never reached", function() end)
exec { "touch", os.getenv("RB_TEST_MARK") or "/nonexistent/mark" }
