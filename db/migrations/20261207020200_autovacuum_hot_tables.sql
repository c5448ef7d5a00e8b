-- migrate:up
SET lock_timeout = '5s';

-- Issue 18: autovacuum settings for the hot tables, chosen by the churn
-- measurement in docs/production.md (npm run bench:churn). ALTER TABLE … SET
-- takes SHARE UPDATE EXCLUSIVE: reads and writes go on.
--
-- messages: every message is written three or four times (intake, claim,
-- settle, retention's delete), never as a HOT update (status is in the
-- indexes), so each delivery leaves dead index entries in the claim index
-- that the next claims step over until VACUUM removes them. PostgreSQL's
-- default waits for 20 % of the table to be dead: 2,000,000 row versions at
-- ten million rows. Here: a vacuum after 5,000 + 1 % dead (or inserted) rows,
-- an ANALYZE after 5,000 + 1 % changed rows (the estimate behind the backlog
-- gauge and the plans), and a cost limit ten times the default so one vacuum
-- of a large table keeps up with a delivery rate of thousands a second.
ALTER TABLE messages SET (
  autovacuum_vacuum_scale_factor = 0.01,
  autovacuum_vacuum_threshold = 5000,
  autovacuum_vacuum_insert_scale_factor = 0.01,
  autovacuum_vacuum_insert_threshold = 5000,
  autovacuum_analyze_scale_factor = 0.01,
  autovacuum_analyze_threshold = 5000,
  autovacuum_vacuum_cost_limit = 2000
);

-- jobs and webhook_rate_limit: a few rows updated many times a second (a run,
-- a claimed chunk): vacuum them by a fixed count of dead rows, not a share.
ALTER TABLE jobs SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);
ALTER TABLE webhook_rate_limit SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);
