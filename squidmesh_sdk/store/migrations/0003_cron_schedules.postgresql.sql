-- squidmesh schema version 3 (postgresql): cron scheduling state.
-- Frozen: later changes go in new numbered migrations.

CREATE TABLE squidmesh_cron_schedules (
	workflow VARCHAR(200) NOT NULL,
	trigger VARCHAR(200) NOT NULL,
	last_start TIMESTAMP WITH TIME ZONE NOT NULL,
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL,
	CONSTRAINT pk_squidmesh_cron_schedules PRIMARY KEY (workflow, trigger)
);
