-- squidmesh schema version 4 (sqlite): the transactional outbox of broker executors (Celery).
-- Frozen: later changes go in new numbered migrations.

CREATE TABLE squidmesh_outbox (
	id INTEGER NOT NULL,
	destination VARCHAR(200) NOT NULL,
	payload JSON NOT NULL,
	run_id CHAR(32),
	publish_at DATETIME NOT NULL,
	attempts INTEGER NOT NULL,
	last_error TEXT,
	inserted_at DATETIME NOT NULL,
	CONSTRAINT pk_squidmesh_outbox PRIMARY KEY (id),
	CONSTRAINT fk_squidmesh_outbox_run_id_squidmesh_runs FOREIGN KEY(run_id) REFERENCES squidmesh_runs (id) ON DELETE CASCADE
);

CREATE INDEX ix_squidmesh_outbox_due ON squidmesh_outbox (publish_at, id);

CREATE INDEX ix_squidmesh_outbox_run_id ON squidmesh_outbox (run_id);
