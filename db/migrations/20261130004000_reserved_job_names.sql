-- migrate:up

-- /jobs/start and /jobs/stop are the switches: a job with either name could be
-- created but never read or patched. NOT VALID: rows that exist are left
-- alone (rename them), every new or changed row is checked.
ALTER TABLE jobs ADD CONSTRAINT jobs_name_not_reserved CHECK (name NOT IN ('start', 'stop')) NOT VALID;
