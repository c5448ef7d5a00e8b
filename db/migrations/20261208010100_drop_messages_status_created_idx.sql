-- migrate:up transaction:false
-- Issue 20: replaced by messages_listing_status_idx (previous file).
DROP INDEX CONCURRENTLY IF EXISTS messages_status_created_idx;
