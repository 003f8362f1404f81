-- squidmesh schema version 11 (postgresql): a step run's latest attempt is kept in the step run's
-- own row (attempt_id, attempt_number, attempt_status, attempt_error, attempt_started_at,
-- attempt_updated_at), so a step tried once writes no row of squidmesh_step_attempts; that
-- table keeps the earlier attempts, and gets the latest one's row when the next one begins.
-- attempt_number counts the attempts begun. Existing data: each step run's highest-numbered
-- attempt moves into its row.
-- Frozen: later changes go in new numbered migrations.

ALTER TABLE squidmesh_step_runs
    ADD COLUMN attempt_id UUID,
    ADD COLUMN attempt_number INTEGER DEFAULT '0' NOT NULL,
    ADD COLUMN attempt_status VARCHAR(16),
    ADD COLUMN attempt_error JSONB,
    ADD COLUMN attempt_started_at TIMESTAMP WITH TIME ZONE,
    ADD COLUMN attempt_updated_at TIMESTAMP WITH TIME ZONE;
UPDATE squidmesh_step_runs AS step_run
SET attempt_id = latest.id,
    attempt_number = latest.attempt_number,
    attempt_status = latest.status,
    attempt_error = latest.error,
    attempt_started_at = latest.inserted_at,
    attempt_updated_at = latest.updated_at
FROM (
    SELECT DISTINCT ON (step_run_id) *
    FROM squidmesh_step_attempts
    ORDER BY step_run_id, attempt_number DESC
) AS latest
WHERE latest.step_run_id = step_run.id;
DELETE FROM squidmesh_step_attempts AS attempt
USING squidmesh_step_runs AS step_run
WHERE step_run.attempt_id = attempt.id;
-- What is left in squidmesh_step_attempts are attempts a later one superseded: any still
-- marked running was abandoned by it.
UPDATE squidmesh_step_attempts
SET status = 'abandoned',
    error = coalesce(error, '{"kind": "abandoned", "message": "step attempt abandoned: a later attempt of the step began while it was marked running", "code": "superseded", "type": null, "retryable": true, "step": null, "details": {}, "cause": null}'::jsonb)
WHERE status = 'running';
-- From now on the table holds finished attempts only: a process of an older release, which
-- inserts each attempt there running, fails instead of numbering attempts apart from the step
-- runs' rows. Stop every process of an older release before migrating.
ALTER TABLE squidmesh_step_attempts
    ADD CONSTRAINT ck_squidmesh_step_attempts_finished CHECK (status <> 'running');
