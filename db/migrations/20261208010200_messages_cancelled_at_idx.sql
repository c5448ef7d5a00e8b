-- migrate:up transaction:false
-- Issue 20: message retention finds cancelled messages by when they were
-- cancelled on this index, failed ones on messages_failed_at_idx and sent ones
-- on messages_sent_keyset_idx (a sent message's sent_at is its last change),
-- so messages_retention_idx (next file) and the entry it took at every settle
-- can go. Cancelled messages are few: this index costs almost nothing.
CREATE INDEX CONCURRENTLY IF NOT EXISTS messages_cancelled_at_idx ON messages (updated_at)
  WHERE status = 'cancelled';
