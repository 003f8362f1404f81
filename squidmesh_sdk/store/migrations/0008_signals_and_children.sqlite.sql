-- squidmesh schema version 8 (sqlite): signals and child runs. A signal sent to a run is kept
-- until a signal step of the run consumes it (oldest first); one signal per run and idempotency
-- key. A child run names the run and step that started it. A failed run resumed by an operator
-- (retry_run) counts it.
-- Frozen: later changes go in new numbered migrations.

CREATE TABLE squidmesh_signals (
	id CHAR(32) NOT NULL,
	run_id CHAR(32) NOT NULL,
	name VARCHAR(200) NOT NULL,
	payload JSON,
	idempotency_key VARCHAR(200),
	status VARCHAR(16) NOT NULL,
	step VARCHAR(200),
	inserted_at DATETIME NOT NULL,
	consumed_at DATETIME,
	CONSTRAINT pk_squidmesh_signals PRIMARY KEY (id),
	CONSTRAINT fk_squidmesh_signals_run_id_squidmesh_runs FOREIGN KEY(run_id) REFERENCES squidmesh_runs (id) ON DELETE CASCADE
);

CREATE INDEX ix_squidmesh_signals_run_id_name_status ON squidmesh_signals (run_id, name, status);

CREATE UNIQUE INDEX ix_squidmesh_signals_run_id_idempotency_key ON squidmesh_signals (run_id, idempotency_key);

ALTER TABLE squidmesh_runs ADD COLUMN parent_run_id CHAR(32);

ALTER TABLE squidmesh_runs ADD COLUMN parent_step VARCHAR(200);

ALTER TABLE squidmesh_runs ADD COLUMN operator_retries INTEGER;

CREATE INDEX ix_squidmesh_runs_parent_run_id ON squidmesh_runs (parent_run_id);
