-- Game day for db-restore: the dump reads through (the preflight checked
-- every block), but pg_restore fails half way: a session nobody ended holds
-- a lock on a table, and the restore gives up after its lock_timeout.
-- Rehearse it with
--   runbook run db-restore --dry-run --scenario examples/scenarios/db-restore.lua \
--     --target staging -p service=api
-- The restore step fails with pg_restore's error; the operator practises the
-- choice it offers: undo (the restore ran in one transaction, so the
-- database is as it was: the undo brings the service back), retry once the
-- session is ended (runbook run db-diagnose), or abort.  The preflight's
-- reads of the dump and the verify step's data read are not matched
-- (pattern and step), so they still read the real dump.
return {
  { name = "restore behind a lock", primitive = "exec", step = "restore", match = "pg_restore %-%-clean",
    result = { code = 1, stderr = "pg_restore: error: could not execute query: ERROR:  canceling " ..
      "statement due to lock timeout\nCommand was: DROP TABLE IF EXISTS public.orders;\n" } },
}
