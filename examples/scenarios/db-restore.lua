-- Game day for db-restore: the dump is truncated and pg_restore fails half
-- way.  Rehearse it with
--   runbook run db-restore --dry-run --scenario examples/scenarios/db-restore.lua \
--     --target staging -p service=api
-- The restore step fails with pg_restore's error; the operator practises the
-- choice it offers: undo (the restore ran in one transaction, so the
-- database is as it was: the undo brings the service back), retry with
-- another dump, or abort.  The preflight's `pg_restore --list` and the
-- verify step's data read are not matched (pattern and step), so they still
-- read the real dump.
return {
  { name = "truncated dump", primitive = "exec", step = "restore", match = "pg_restore %-%-clean",
    result = { code = 1, stderr = "pg_restore: error: could not read from input file: end of file\n" } },
}
