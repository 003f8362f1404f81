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
-- What is left in squidmesh_step_attempts are attempts a later one superseded: any still
-- marked running was abandoned by it.
UPDATE squidmesh_step_attempts
SET status = 'abandoned',
    error = coalesce(error, '{"kind": "abandoned", "message": "step attempt abandoned: a later attempt of the step began while it was marked running", "code": "superseded", "type": null, "retryable": true, "step": null, "details": {}, "cause": null}')
WHERE status = 'running';
-- From now on the table holds finished attempts only (ck_squidmesh_step_attempts_finished): a
-- process of an older release, which inserts each attempt there running, fails instead of
-- numbering attempts apart from the step runs' rows. Stop every process of an older release
-- before migrating. SQLite adds a CHECK constraint by rebuilding the table (small now: only the
-- attempts a later one superseded are left in it).
CREATE TABLE squidmesh_step_attempts_11 (
	id CHAR(32) NOT NULL,
	step_run_id CHAR(32) NOT NULL,
	attempt_number INTEGER NOT NULL,
	status VARCHAR(16) NOT NULL,
	error JSON,
	inserted_at DATETIME NOT NULL,
	updated_at DATETIME NOT NULL,
	CONSTRAINT pk_squidmesh_step_attempts PRIMARY KEY (id),
	CONSTRAINT uq_squidmesh_step_attempts_step_run_id_attempt_number UNIQUE (step_run_id, attempt_number),
	CONSTRAINT fk_squidmesh_step_attempts_step_run_id_squidmesh_step_runs FOREIGN KEY(step_run_id) REFERENCES squidmesh_step_runs (id) ON DELETE CASCADE,
	CONSTRAINT ck_squidmesh_step_attempts_finished CHECK (status <> 'running')
);
INSERT INTO squidmesh_step_attempts_11 (id, step_run_id, attempt_number, status, error, inserted_at, updated_at)
SELECT id, step_run_id, attempt_number, status, error, inserted_at, updated_at FROM squidmesh_step_attempts;
DROP TABLE squidmesh_step_attempts;
ALTER TABLE squidmesh_step_attempts_11 RENAME TO squidmesh_step_attempts;
