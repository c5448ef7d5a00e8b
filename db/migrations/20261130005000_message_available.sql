-- migrate:up

-- Issue 12: the claim stays one index scan at a million pending rows, even
-- when most of them are not due (a campaign scheduled for tomorrow with
-- sendAt, a large backlog of retries in backoff).
--
-- available: the message is pending AND its send time has come
-- (next_attempt_at <= now() when it was last set). It is the scheduled ->
-- available promotion of River and Oban, kept out of the public status: the
-- API still says 'pending' for both.
--   * Every statement that makes a message pending sets it (sql/queries/messages.sql):
--     intake and retry set it when sendAt is absent or past, a lease release
--     or a hand-back when the message was due, a transient outcome with
--     backoff never does.
--   * PromoteDueMessages turns due pending messages that are not yet
--     available into available ones, a bounded number per claim, in the
--     claim's transaction; ClaimMessages then walks only
--     messages_available_claim_idx, in claim order, reading no row it
--     will not claim.
--   * Every statement that takes a message out of pending clears it. So a
--     statement that makes a message pending and forgets the column leaves
--     false: the message waits for the next promotion, it never goes early.
--     The default, false, is that safe side too: an INSERT that does not name
--     it is promoted at the next claim once its next_attempt_at has come.
--   * The claim still compares next_attempt_at, so even a row marked
--     available too soon (a hand-written UPDATE, a pod of the previous
--     version during a rolling deploy) is not sent before its time.
-- No CHECK ties it to status: a pod of the previous version, still running
-- during a rolling deploy, claims and cancels without knowing the column, and
-- must not fail; the values it leaves on non-pending rows are outside both
-- indexes below, and every statement that makes a message pending again sets
-- them.
ALTER TABLE messages ADD COLUMN available boolean NOT NULL DEFAULT false;

UPDATE messages SET available = true WHERE status = 'pending' AND next_attempt_at <= now();

-- The claim: available messages, created_at ASC, id.
CREATE INDEX messages_available_claim_idx ON messages (created_at, id)
  WHERE status = 'pending' AND available;
-- The promotion: pending messages not yet available, by when they become due.
-- With nothing due, it reads one index entry and stops.
CREATE INDEX messages_scheduled_due_idx ON messages (next_attempt_at)
  WHERE status = 'pending' AND NOT available;

-- The claim no longer reads these. Of the other readers of pending messages,
-- ListMessages with status=pending walks messages_status_created_idx (or
-- messages_created_idx), and CountPendingMessages, the 5 s metrics gauge, used
-- the first for an index-only count and now makes one pass over the table or
-- messages_status_created_idx: not worth maintaining an index of every
-- pending message on each insert and claim. Checked with EXPLAIN in
-- test/messages/claim-plan.test.ts.
DROP INDEX messages_pending_claim_idx;
DROP INDEX messages_pending_due_idx;
