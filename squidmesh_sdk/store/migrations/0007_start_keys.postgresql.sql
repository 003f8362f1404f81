-- squidmesh schema version 7 (postgresql): idempotent starts. A run started with an idempotency key
-- keeps it with the fingerprint of the request (trigger and payload); one run per workflow and
-- key, whatever the trigger. Cron's schedule identity (idempotency_key) is untouched.
-- Frozen: later changes go in new numbered migrations.

ALTER TABLE squidmesh_runs ADD COLUMN start_key VARCHAR(200);

ALTER TABLE squidmesh_runs ADD COLUMN start_request VARCHAR(80);

CREATE UNIQUE INDEX ix_squidmesh_runs_workflow_start_key ON squidmesh_runs (workflow, start_key);
