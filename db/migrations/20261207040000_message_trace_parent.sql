-- migrate:up
SET lock_timeout = '5s';

-- Issue 19: trace context end to end. The W3C `traceparent` of the intake
-- request's span (the posted one continued, or a new trace), so every
-- delivery attempt of the message continues the same trace, whichever pod
-- makes it. Null for messages stored before this column existed: their
-- attempts use a trace id derived from the message id (src/delivery/trace.ts).
-- Nullable with no default: adding it rewrites nothing and holds the table's
-- lock only for the catalog change (lock_timeout bounds the wait for it).
ALTER TABLE messages ADD COLUMN trace_parent text;

-- migrate:down
ALTER TABLE messages DROP COLUMN trace_parent;
