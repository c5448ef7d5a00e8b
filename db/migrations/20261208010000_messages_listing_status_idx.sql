-- migrate:up transaction:false
-- Issue 20: the operators' listing by status (GET /messages?status=) without
-- the rows in flight. messages_status_created_idx held every row version, so
-- each claim (pending -> sending) added an entry to it that no listing of
-- pending, sent, failed or cancelled messages reads; a listing of sending
-- messages walks messages_sending_lease_idx and sorts them (there are only as
-- many as the pods have in flight). One index entry less per message claimed
-- (about 130 bytes of WAL). The old index goes in the next file, once this one
-- is built. Built CONCURRENTLY: intake and dispatch go on meanwhile.
CREATE INDEX CONCURRENTLY IF NOT EXISTS messages_listing_status_idx ON messages (status, created_at DESC, id DESC)
  WHERE status <> 'sending';
