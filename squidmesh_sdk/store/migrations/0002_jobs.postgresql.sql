-- squidmesh schema version 2 (postgresql): the built-in database queue.
-- Frozen: later changes go in new numbered migrations.

CREATE TABLE squidmesh_jobs (
	id BIGSERIAL NOT NULL,
	queue VARCHAR(100) NOT NULL,
	kind VARCHAR(16) NOT NULL,
	payload JSONB NOT NULL,
	run_id UUID,
	step VARCHAR(200),
	status VARCHAR(16) NOT NULL,
	run_at TIMESTAMP WITH TIME ZONE NOT NULL,
	deliveries INTEGER NOT NULL,
	rescues INTEGER NOT NULL,
	locked_by VARCHAR(200),
	locked_until TIMESTAMP WITH TIME ZONE,
	last_error JSONB,
	inserted_at TIMESTAMP WITH TIME ZONE NOT NULL,
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL,
	CONSTRAINT pk_squidmesh_jobs PRIMARY KEY (id),
	CONSTRAINT fk_squidmesh_jobs_run_id_squidmesh_runs FOREIGN KEY(run_id) REFERENCES squidmesh_runs (id) ON DELETE CASCADE
);

CREATE INDEX ix_squidmesh_jobs_claim ON squidmesh_jobs (queue, run_at, id) WHERE status = 'queued';

CREATE INDEX ix_squidmesh_jobs_leases ON squidmesh_jobs (locked_until) WHERE status = 'running';

CREATE INDEX ix_squidmesh_jobs_run_id ON squidmesh_jobs (run_id);
