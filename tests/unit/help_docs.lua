-- docs/authoring.md's generated parts (the questions table, the whole
-- "## Primitives" section) are what stdlib/runbook/help.lua renders, the
-- text `help()` prints in the REPL: fails naming the part that drifted.
local root = os.getenv("RB_SOURCE_DIR") or "."
arg = { "--check", root }
dofile(root .. "/scripts/gen-docs.lua")
