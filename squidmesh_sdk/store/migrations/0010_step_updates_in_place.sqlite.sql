-- squidmesh schema version 10 (sqlite): no index of squidmesh_runs covers a column that every
-- step changes (updated_at, context, current_step, last_error), so a step's update of its run
-- touches no index: PostgreSQL updates the row in place (a heap-only tuple), SQLite leaves its
-- index b-trees alone. The purge walks finished runs by (status, inserted_at) instead.
-- Frozen: later changes go in new numbered migrations.

DROP INDEX ix_squidmesh_runs_status_updated_at_id;
