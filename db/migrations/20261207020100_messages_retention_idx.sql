-- migrate:up transaction:false
-- Issue 18, message retention: the terminal messages by their last change,
-- so each bounded DELETE of the retention pass (DeleteExpiredMessages) reads
-- only rows it removes, at any table size. Built CONCURRENTLY, outside a
-- transaction: intake and dispatch go on while it builds.
CREATE INDEX CONCURRENTLY IF NOT EXISTS messages_retention_idx ON messages (updated_at)
  WHERE status IN ('sent', 'failed', 'cancelled');
