-- squidmesh schema version 11 (sqlite): a step run's latest attempt is kept in the step run's own
-- row (attempt_id, attempt_number, attempt_status, attempt_error, attempt_started_at,
-- attempt_updated_at), so a step tried once writes no row of squidmesh_step_attempts; that
-- table keeps the earlier attempts, and gets the latest one's row when the next one begins.
-- attempt_number counts the attempts begun. Existing data: each step run's highest-numbered
-- attempt moves into its row.
-- Frozen: later changes go in new numbered migrations.

ALTER TABLE squidmesh_step_runs ADD COLUMN attempt_id CHAR(32);
ALTER TABLE squidmesh_step_runs ADD COLUMN attempt_number INTEGER DEFAULT '0' NOT NULL;
ALTER TABLE squidmesh_step_runs ADD COLUMN attempt_status VARCHAR(16);
ALTER TABLE squidmesh_step_runs ADD COLUMN attempt_error JSON;
ALTER TABLE squidmesh_step_runs ADD COLUMN attempt_started_at DATETIME;
ALTER TABLE squidmesh_step_runs ADD COLUMN attempt_updated_at DATETIME;
UPDATE squidmesh_step_runs
SET (attempt_id, attempt_number, attempt_status, attempt_error, attempt_started_at, attempt_updated_at) = (
    SELECT latest.id, latest.attempt_number, latest.status, latest.error, latest.inserted_at, latest.updated_at
    FROM squidmesh_step_attempts AS latest
    WHERE latest.step_run_id = squidmesh_step_runs.id
    ORDER BY latest.attempt_number DESC
    LIMIT 1
)
WHERE EXISTS (SELECT 1 FROM squidmesh_step_attempts AS a WHERE a.step_run_id = squidmesh_step_runs.id);
DELETE FROM squidmesh_step_attempts
WHERE id IN (SELECT attempt_id FROM squidmesh_step_runs WHERE attempt_id IS NOT NULL);
