-- squidmesh schema version 9 (sqlite): flow control on the database queue. Runs and their jobs
-- carry a priority (higher first; the claim index orders by it). A job may carry a concurrency
-- key and limit: the claim counts running jobs per key. Operators' queue limits (concurrency,
-- rate with its token bucket) live in squidmesh_queue_limits.
-- Frozen: later changes go in new numbered migrations.

ALTER TABLE squidmesh_runs ADD COLUMN priority INTEGER DEFAULT 0 NOT NULL;

ALTER TABLE squidmesh_jobs ADD COLUMN priority INTEGER DEFAULT 0 NOT NULL;

ALTER TABLE squidmesh_jobs ADD COLUMN concurrency_key VARCHAR(500);

ALTER TABLE squidmesh_jobs ADD COLUMN concurrency_limit INTEGER;

DROP INDEX ix_squidmesh_jobs_claim;

CREATE INDEX ix_squidmesh_jobs_claim ON squidmesh_jobs (queue, priority DESC, run_at, id) WHERE status = 'queued';

CREATE INDEX ix_squidmesh_jobs_running_keys ON squidmesh_jobs (concurrency_key) WHERE status = 'running' AND concurrency_key IS NOT NULL;

CREATE TABLE squidmesh_queue_limits (
	queue VARCHAR(100) NOT NULL,
	concurrency INTEGER,
	rate_count INTEGER,
	rate_period FLOAT,
	tokens FLOAT,
	refilled_at DATETIME,
	updated_at DATETIME NOT NULL,
	CONSTRAINT pk_squidmesh_queue_limits PRIMARY KEY (queue)
);
