-- squidmesh schema version 6 (sqlite): retention. The purge finds finished runs by status
-- and age (updated_at) through an index, and workers take turns at the periodic purge.
-- Frozen: later changes go in new numbered migrations.

CREATE INDEX ix_squidmesh_runs_status_updated_at_id ON squidmesh_runs (status, updated_at, id);

CREATE TABLE squidmesh_maintenance (
	task VARCHAR(100) NOT NULL,
	last_run_at DATETIME NOT NULL,
	updated_at DATETIME NOT NULL,
	CONSTRAINT pk_squidmesh_maintenance PRIMARY KEY (task)
);
