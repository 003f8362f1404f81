-- squidmesh schema version 3 (sqlite): cron scheduling state.
-- Frozen: later changes go in new numbered migrations.

CREATE TABLE squidmesh_cron_schedules (
	workflow VARCHAR(200) NOT NULL,
	"trigger" VARCHAR(200) NOT NULL,
	last_start DATETIME NOT NULL,
	updated_at DATETIME NOT NULL,
	CONSTRAINT pk_squidmesh_cron_schedules PRIMARY KEY (workflow, "trigger")
);
