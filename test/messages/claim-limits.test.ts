import { expect } from 'chai';
import { purgeExpiredIdempotencyKeys } from '../../src/db/sqlc/idempotency_keys_sql.ts';
import { claimDueJobs } from '../../src/db/sqlc/jobs_sql.ts';
import { deleteExpiredMessages } from '../../src/db/sqlc/maintenance_sql.ts';
import { promoteDueMessages, retryFailedMessages } from '../../src/db/sqlc/messages_sql.ts';
import { claimDueMessages } from '../../src/delivery/claim.ts';
import { useTestPool } from '../support/postgres.ts';

/** Rows each test offers to the statement: more than the limit, so an over-claim shows. */
const offered = 5;
/** The limit each statement is given. */
const limit = 2;

/**
 * Every bounded claim (LIMIT n FOR UPDATE SKIP LOCKED, then an UPDATE or
 * DELETE of the rows chosen) takes exactly n rows even when the table's
 * statistics are stale. The trap: ANALYZE saw one row, so the planner may put
 * the choosing subquery on the rescanned inner side of a nested loop, where
 * every rescan skips the rows the statement already locked and chooses the
 * next ones. A statement that chooses its rows once is immune.
 */
describe('bounded claims under stale statistics', () => {
  const { pool } = useTestPool();

  /**
   * Leaves `table` holding `offered` rows made by `fill` (SQL with $1 = how
   * many, rows 1..$1 in the statement's order) while its statistics say one
   * row: one row is analysed, then replaced.
   */
  const withOneRowStatistics = async (table: string, fill: string) => {
    await pool().query(`DELETE FROM ${table}`);
    await pool().query(fill, [1]);
    await pool().query(`VACUUM ANALYZE ${table}`);
    await pool().query(`DELETE FROM ${table}`);
    await pool().query(fill, [offered]);
    const stats = await pool().query('SELECT reltuples FROM pg_class WHERE oid = $1::regclass', [table]);
    expect(stats.rows[0].reltuples, `${table} statistics`).to.equal(1);
  };
  const column = async (sql: string) => (await pool().query(sql)).rows.map((row) => Object.values(row)[0]);

  it('ClaimMessages claims max_messages, the oldest available', async () => {
    await withOneRowStatistics(
      'messages',
      `INSERT INTO messages (recipient, content, available, created_at)
       SELECT '+905551111111', 'm' || i, true, now() - interval '1 minute' + i * interval '1 millisecond'
       FROM generate_series(1, $1::integer) AS i`,
    );
    const claimed = await claimDueMessages(pool(), {
      leaseSeconds: 60,
      owner: 'pod-a',
      executionId: null,
      maxMessages: limit,
    });
    expect(claimed.map((row) => row.content)).to.deep.equal(['m1', 'm2']);
    expect(await column("SELECT content FROM messages WHERE status = 'sending' ORDER BY content")).to.deep.equal([
      'm1',
      'm2',
    ]);
  });

  it('PromoteDueMessages promotes max_rows, the earliest due', async () => {
    await withOneRowStatistics(
      'messages',
      `INSERT INTO messages (recipient, content, available, next_attempt_at)
       SELECT '+905551111111', 'm' || i, false, now() - interval '1 minute' + i * interval '1 millisecond'
       FROM generate_series(1, $1::integer) AS i`,
    );
    expect(await promoteDueMessages(pool(), { maxRows: limit })).to.equal(limit);
    expect(await column('SELECT content FROM messages WHERE available ORDER BY content')).to.deep.equal(['m1', 'm2']);
  });

  it('RetryFailedMessages retries max_rows, the oldest failures', async () => {
    await withOneRowStatistics(
      'messages',
      `INSERT INTO messages (recipient, content, status, available, updated_at)
       SELECT '+905551111111', 'm' || i, 'failed', false, now() - interval '1 minute' + i * interval '1 millisecond'
       FROM generate_series(1, $1::integer) AS i`,
    );
    expect(await retryFailedMessages(pool(), { since: null, until: null, maxRows: limit })).to.deep.equal({
      retried: limit,
    });
    expect(await column("SELECT content FROM messages WHERE status = 'pending' ORDER BY content")).to.deep.equal([
      'm1',
      'm2',
    ]);
  });

  it('DeleteExpiredMessages removes max_rows, the longest unchanged', async () => {
    await withOneRowStatistics(
      'messages',
      `INSERT INTO messages (recipient, content, status, available, updated_at)
       SELECT '+905551111111', 'm' || i, 'failed', false, now() - interval '40 days' + i * interval '1 millisecond'
       FROM generate_series(1, $1::integer) AS i`,
    );
    expect(await deleteExpiredMessages(pool(), { retentionDays: 30, maxRows: limit })).to.deep.equal({
      deleted: limit,
    });
    expect(await column('SELECT content FROM messages ORDER BY content')).to.deep.equal(['m3', 'm4', 'm5']);
  });

  it('ClaimDueJobs claims max_jobs, the earliest due', async () => {
    await withOneRowStatistics(
      'jobs',
      `INSERT INTO jobs (name, handler, interval_seconds, batch_size, status, next_run_at)
       SELECT 'job-' || i, 'send-messages', 60, 2, 'active', now() - interval '1 minute' + i * interval '1 second'
       FROM generate_series(1, $1::integer) AS i`,
    );
    const claimed = await claimDueJobs(pool(), { owner: 'pod-a', leaseSeconds: 30, maxJobs: limit });
    expect(claimed.map((job) => job.name).sort()).to.deep.equal(['job-1', 'job-2']);
    expect(await column("SELECT name FROM jobs WHERE status = 'in_progress' ORDER BY name")).to.deep.equal([
      'job-1',
      'job-2',
    ]);
  });

  it('PurgeExpiredIdempotencyKeys deletes max_rows, the oldest', async () => {
    await withOneRowStatistics(
      'idempotency_keys',
      `INSERT INTO idempotency_keys (scope, idempotency_key, request_hash, response_status, response_body, created_at)
       SELECT 'messages', 'key-' || i, 'hash', 202, '{}', now() - interval '25 hours' + i * interval '1 second'
       FROM generate_series(1, $1::integer) AS i`,
    );
    expect(await purgeExpiredIdempotencyKeys(pool(), { maxRows: limit })).to.deep.equal({ deleted: limit });
    expect(await column('SELECT idempotency_key FROM idempotency_keys ORDER BY idempotency_key')).to.deep.equal([
      'key-3',
      'key-4',
      'key-5',
    ]);
  });
});
