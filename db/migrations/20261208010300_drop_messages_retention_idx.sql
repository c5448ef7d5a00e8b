-- migrate:up transaction:false
-- Issue 20: retention reads messages_sent_keyset_idx, messages_failed_at_idx
-- and messages_cancelled_at_idx instead (DeleteExpiredMessages). A pod of the
-- previous version still running its retention pass during a rolling deploy
-- reads the table without this index until it is replaced; nothing else reads
-- it.
DROP INDEX CONCURRENTLY IF EXISTS messages_retention_idx;
