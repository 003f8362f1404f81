-- squidmesh schema version 1 (postgresql): runs, step runs, attempts, run events.
-- Frozen: later changes go in new numbered migrations.

CREATE TABLE squidmesh_runs (
	id UUID NOT NULL,
	workflow VARCHAR(200) NOT NULL,
	trigger VARCHAR(200) NOT NULL,
	status VARCHAR(16) NOT NULL,
	payload JSONB NOT NULL,
	context JSONB NOT NULL,
	current_step VARCHAR(200),
	last_error JSONB,
	replayed_from_run_id UUID,
	definition_fingerprint VARCHAR(80) NOT NULL,
	idempotency_key VARCHAR(200),
	trace_context JSONB,
	inserted_at TIMESTAMP WITH TIME ZONE NOT NULL,
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL,
	CONSTRAINT pk_squidmesh_runs PRIMARY KEY (id),
	CONSTRAINT uq_squidmesh_runs_workflow_trigger_idempotency_key UNIQUE (workflow, trigger, idempotency_key),
	CONSTRAINT fk_squidmesh_runs_replayed_from_run_id_squidmesh_runs FOREIGN KEY(replayed_from_run_id) REFERENCES squidmesh_runs (id) ON DELETE SET NULL
);

CREATE INDEX ix_squidmesh_runs_inserted_at ON squidmesh_runs (inserted_at);

CREATE INDEX ix_squidmesh_runs_replayed_from_run_id ON squidmesh_runs (replayed_from_run_id);

CREATE INDEX ix_squidmesh_runs_status_inserted_at ON squidmesh_runs (status, inserted_at);

CREATE INDEX ix_squidmesh_runs_workflow_inserted_at ON squidmesh_runs (workflow, inserted_at);

CREATE TABLE squidmesh_run_events (
	id UUID NOT NULL,
	run_id UUID NOT NULL,
	type VARCHAR(32) NOT NULL,
	step VARCHAR(200),
	actor JSONB,
	comment TEXT,
	metadata JSONB,
	at TIMESTAMP WITH TIME ZONE NOT NULL,
	CONSTRAINT pk_squidmesh_run_events PRIMARY KEY (id),
	CONSTRAINT fk_squidmesh_run_events_run_id_squidmesh_runs FOREIGN KEY(run_id) REFERENCES squidmesh_runs (id) ON DELETE CASCADE
);

CREATE INDEX ix_squidmesh_run_events_run_id_at ON squidmesh_run_events (run_id, at);

CREATE TABLE squidmesh_step_runs (
	id UUID NOT NULL,
	run_id UUID NOT NULL,
	step VARCHAR(200) NOT NULL,
	status VARCHAR(16) NOT NULL,
	input JSONB NOT NULL,
	output JSONB,
	last_error JSONB,
	recovery JSONB,
	resume JSONB,
	manual JSONB,
	inserted_at TIMESTAMP WITH TIME ZONE NOT NULL,
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL,
	CONSTRAINT pk_squidmesh_step_runs PRIMARY KEY (id),
	CONSTRAINT uq_squidmesh_step_runs_run_id_step UNIQUE (run_id, step),
	CONSTRAINT fk_squidmesh_step_runs_run_id_squidmesh_runs FOREIGN KEY(run_id) REFERENCES squidmesh_runs (id) ON DELETE CASCADE
);

CREATE TABLE squidmesh_step_attempts (
	id UUID NOT NULL,
	step_run_id UUID NOT NULL,
	attempt_number INTEGER NOT NULL,
	status VARCHAR(16) NOT NULL,
	error JSONB,
	inserted_at TIMESTAMP WITH TIME ZONE NOT NULL,
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL,
	CONSTRAINT pk_squidmesh_step_attempts PRIMARY KEY (id),
	CONSTRAINT uq_squidmesh_step_attempts_step_run_id_attempt_number UNIQUE (step_run_id, attempt_number),
	CONSTRAINT fk_squidmesh_step_attempts_step_run_id_squidmesh_step_runs FOREIGN KEY(step_run_id) REFERENCES squidmesh_step_runs (id) ON DELETE CASCADE
);
