-- squidmesh schema version 2 (sqlite): the built-in database queue.
-- Frozen: later changes go in new numbered migrations.

CREATE TABLE squidmesh_jobs (
	id INTEGER NOT NULL,
	queue VARCHAR(100) NOT NULL,
	kind VARCHAR(16) NOT NULL,
	payload JSON NOT NULL,
	run_id CHAR(32),
	step VARCHAR(200),
	status VARCHAR(16) NOT NULL,
	run_at DATETIME NOT NULL,
	deliveries INTEGER NOT NULL,
	rescues INTEGER NOT NULL,
	locked_by VARCHAR(200),
	locked_until DATETIME,
	last_error JSON,
	inserted_at DATETIME NOT NULL,
	updated_at DATETIME NOT NULL,
	CONSTRAINT pk_squidmesh_jobs PRIMARY KEY (id),
	CONSTRAINT fk_squidmesh_jobs_run_id_squidmesh_runs FOREIGN KEY(run_id) REFERENCES squidmesh_runs (id) ON DELETE CASCADE
);

CREATE INDEX ix_squidmesh_jobs_claim ON squidmesh_jobs (queue, run_at, id) WHERE status = 'queued';

CREATE INDEX ix_squidmesh_jobs_leases ON squidmesh_jobs (locked_until) WHERE status = 'running';

CREATE INDEX ix_squidmesh_jobs_run_id ON squidmesh_jobs (run_id);
