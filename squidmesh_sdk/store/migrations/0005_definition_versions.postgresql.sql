-- squidmesh schema version 5 (postgresql): runs pinned to a definition version; jobs say which
-- workflow and version a worker must hold to take them.
-- Frozen: later changes go in new numbered migrations.

ALTER TABLE squidmesh_runs ADD COLUMN definition_version VARCHAR(80);

ALTER TABLE squidmesh_jobs ADD COLUMN workflow VARCHAR(200);

ALTER TABLE squidmesh_jobs ADD COLUMN definition_version VARCHAR(80);

-- Existing runs are pinned to the version derived from their fingerprint (what a workflow
-- without version= gets), and their queued jobs follow them.
UPDATE squidmesh_runs
SET definition_version = 'fp-' || substr(definition_fingerprint, 8, 16);

UPDATE squidmesh_jobs
SET workflow = (SELECT r.workflow FROM squidmesh_runs r WHERE r.id = squidmesh_jobs.run_id),
	definition_version = (
		SELECT r.definition_version FROM squidmesh_runs r WHERE r.id = squidmesh_jobs.run_id
	)
WHERE run_id IS NOT NULL;
