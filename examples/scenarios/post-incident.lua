-- Game day for runbooks/post-incident.lua: the disk is full when the
-- report is written.
--   runbook run post-incident --dry-run --scenario examples/scenarios/post-incident.lua \
--     -p transcripts=run.jsonl
-- Expected: the transcripts are read and the questions asked as usual; the
-- write step fails with the disk error, and the operator retries after
-- freeing space, or aborts and writes it elsewhere (-p output=PATH with
-- --start-at write is not enough: run again, the answers file keeps the text).
return {
  { name = "disk full", primitive = "exec", step = "write", match = "^cp /dev/stdin ",
    error = "cp: error writing the report: No space left on device" },
}
