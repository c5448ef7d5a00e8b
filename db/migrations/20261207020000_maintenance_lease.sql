-- migrate:up
SET lock_timeout = '5s';

-- Issue 18: the maintenance loop (message retention, the idempotency-key
-- purge) runs on every pod, one pod at a time. A pass is many short
-- statements, each its own transaction (bounded batches that never hold row
-- locks for long), so the turn cannot be a session advisory lock (PgBouncer's
-- transaction pooling hands each statement any server connection) nor a
-- transaction-scoped one (it would last the whole pass). It is this row: a
-- pod takes it with a lease (UPDATE … WHERE the lease has expired), renews it
-- before each batch and hands it back at the end; a pod that dies mid-pass
-- leaves a lease that expires on its own.
CREATE TABLE maintenance_lease (
  task        text        PRIMARY KEY,
  lease_until timestamptz NOT NULL DEFAULT '-infinity',
  locked_by   text,
  -- When the last pass finished (for operators).
  finished_at timestamptz,
  CONSTRAINT maintenance_lease_task_known CHECK (task IN ('maintenance'))
);
INSERT INTO maintenance_lease (task) VALUES ('maintenance');
