import { expect } from 'chai';
import type { Pool } from '../../src/db/pool.ts';
import { takeMaintenanceLease } from '../../src/db/sqlc/maintenance_sql.ts';
import { type MaintenanceDeps, RETENTION_BATCH_ROWS, runMaintenancePass } from '../../src/maintenance/maintenance.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { useTestPool } from '../support/postgres.ts';
import { eventually, startTestService, type TestService } from '../support/service.ts';

/**
 * Message retention and the maintenance turn, against a real PostgreSQL:
 * terminal messages go by the age of their last change, never by their age,
 * pending and sending ones never go, and one pod at a time runs a pass.
 */
describe('maintenance: message retention', () => {
  const { db, pool } = useTestPool();
  const deps = (owner = 'pod-a', over: Partial<MaintenanceDeps> = {}): MaintenanceDeps => ({
    pool: pool(),
    owner,
    logger: silentLogger(),
    ...over,
  });
  const contents = async () =>
    (await pool().query<{ content: string }>('SELECT content FROM messages ORDER BY content')).rows.map(
      (row) => row.content,
    );

  /**
   * One message per row of `rows`: content, status and the age of created_at
   * and updated_at in days, written as an operator's tool would (the columns
   * DESIGN's data model names).
   */
  const insert = async (rows: Array<[content: string, status: string, createdDays: number, updatedDays: number]>) => {
    for (const [content, status, createdDays, updatedDays] of rows) {
      await pool().query(
        `INSERT INTO messages (recipient, content, status, created_at, updated_at, sent_at, external_message_id,
                               lease_until, locked_by)
         VALUES ('+905551111111', $1, $2, now() - make_interval(days => $3), now() - make_interval(days => $4),
                 CASE WHEN $2 = 'sent' THEN now() - make_interval(days => $4) END,
                 CASE WHEN $2 = 'sent' THEN 'ext-' || $1 END,
                 CASE WHEN $2 = 'sending' THEN now() + interval '1 minute' END,
                 CASE WHEN $2 = 'sending' THEN 'pod-z' END)`,
        [content, status, createdDays, updatedDays],
      );
    }
  };
  const everyKind = async () =>
    insert([
      ['old-sent', 'sent', 40, 31],
      ['old-failed', 'failed', 40, 31],
      ['old-cancelled', 'cancelled', 40, 31],
      ['old-pending', 'pending', 400, 400],
      ['old-sending', 'sending', 400, 400],
      ['recent-sent', 'sent', 40, 29],
      ['recent-failed', 'failed', 2, 1],
      ['new-pending', 'pending', 0, 0],
    ]);

  beforeEach(async () => {
    await pool().query('DELETE FROM messages');
    await pool().query(
      "UPDATE maintenance_lease SET lease_until = '-infinity', locked_by = NULL WHERE task = 'maintenance'",
    );
  });

  it('removes terminal messages whose last change is older than the window, and keeps every other', async () => {
    await everyKind();
    // Two attempts for every message: those of the removed messages go with them, the others stay.
    await pool().query(
      `INSERT INTO message_attempts (message_id, attempt, started_at, duration_ms, outcome)
       SELECT id, n, now(), 5, 'retry' FROM messages, generate_series(1, 2) AS n`,
    );
    const outcome = await runMaintenancePass(deps(), 30);
    expect(outcome).to.deep.equal({ ran: true, removed: { messages: 3, idempotency_keys: 0 } });
    expect(await contents()).to.deep.equal([
      'new-pending',
      'old-pending',
      'old-sending',
      'recent-failed',
      'recent-sent',
    ]);
    const history = await pool().query<{ content: string; attempts: number }>(
      `SELECT m.content, count(a.attempt)::integer AS attempts
       FROM message_attempts AS a LEFT JOIN messages AS m ON m.id = a.message_id
       GROUP BY m.content ORDER BY m.content NULLS FIRST`,
    );
    expect(history.rows.map((row) => `${row.content}:${row.attempts}`)).to.deep.equal([
      'new-pending:2',
      'old-pending:2',
      'old-sending:2',
      'recent-failed:2',
      'recent-sent:2',
    ]);
  });

  it('keeps a pending message created long ago and a sent one created long ago but changed within the window', async () => {
    await insert([
      ['pending-created-a-year-ago', 'pending', 365, 365],
      ['sent-created-a-year-ago-changed-today', 'sent', 365, 0],
    ]);
    expect(await runMaintenancePass(deps(), 1)).to.deep.equal({
      ran: true,
      removed: { messages: 0, idempotency_keys: 0 },
    });
    expect(await contents()).to.deep.equal(['pending-created-a-year-ago', 'sent-created-a-year-ago-changed-today']);
  });

  it('keeps everything with MESSAGE_RETENTION_DAYS=0', async () => {
    await everyKind();
    expect(await runMaintenancePass(deps(), 0)).to.deep.equal({
      ran: true,
      removed: { messages: 0, idempotency_keys: 0 },
    });
    expect(await contents()).to.have.length(8);
  });

  it('removes a backlog larger than one batch, in batches, and counts it in the metric by table', async () => {
    const backlog = RETENTION_BATCH_ROWS * 2 + 7;
    await pool().query(
      `INSERT INTO messages (recipient, content, status, updated_at)
       SELECT '+905551111111', 'f' || i, 'failed', now() - interval '3 days' FROM generate_series(1, $1::integer) AS i`,
      [backlog],
    );
    await pool().query(
      `INSERT INTO idempotency_keys (scope, idempotency_key, request_hash, response_status, response_body, created_at)
       SELECT '', 'expired-' || i, 'h', 201, '{}', now() - interval '25 hours' FROM generate_series(1, 1500) AS i`,
    );
    await insert([['kept', 'failed', 1, 1]]);
    const metrics = createMetrics();
    const outcome = await runMaintenancePass(deps('pod-a', { metrics }), 2);
    expect(outcome).to.deep.equal({ ran: true, removed: { messages: backlog, idempotency_keys: 1500 } });
    expect(await contents()).to.deep.equal(['kept']);
    const exposition = await metrics.registry.metrics();
    expect(exposition).to.include(`job_manager_maintenance_rows_removed_total{table="messages"} ${backlog}`);
    expect(exposition).to.include('job_manager_maintenance_rows_removed_total{table="idempotency_keys"} 1500');
    expect(exposition).to.include('job_manager_maintenance_pass_duration_seconds_count 1');
  });

  it('skips the pass while another pod holds the turn, and runs once its lease has expired', async () => {
    await everyKind();
    expect(await takeMaintenanceLease(pool(), { leaseMs: 60_000, owner: 'pod-b' })).to.not.equal(null);
    expect(await runMaintenancePass(deps('pod-a'), 30)).to.deep.equal({ ran: false });
    expect(await contents()).to.have.length(8);
    // pod-b died mid-pass: its lease runs out and the turn is free again.
    await pool().query("UPDATE maintenance_lease SET lease_until = now() - interval '1 second'");
    expect(await runMaintenancePass(deps('pod-a'), 30)).to.deep.include({ ran: true });
    expect(await contents()).to.have.length(5);
  });

  it('never lets a second pod run a pass while the first is between batches', async () => {
    await pool().query(
      `INSERT INTO messages (recipient, content, status, updated_at)
       SELECT '+905551111111', 'f' || i, 'failed', now() - interval '3 days' FROM generate_series(1, $1::integer) AS i`,
      [RETENTION_BATCH_ROWS + 1],
    );
    // pod-a's pool: before each retention batch, pod-b tries a whole pass of its own.
    const seenByB: unknown[] = [];
    const podA = new Proxy(pool(), {
      get(target, property, receiver) {
        if (property !== 'query') return Reflect.get(target, property, receiver);
        return async (query: { text?: string }, ...rest: unknown[]) => {
          if (typeof query === 'object' && query.text?.includes('DeleteExpiredMessages'))
            seenByB.push(await runMaintenancePass(deps('pod-b'), 2));
          return (target.query as (...args: unknown[]) => Promise<unknown>).apply(target, [query, ...rest]);
        };
      },
    }) as Pool;
    const outcome = await runMaintenancePass(deps('pod-a', { pool: podA }), 2);
    expect(outcome).to.deep.equal({ ran: true, removed: { messages: RETENTION_BATCH_ROWS + 1, idempotency_keys: 0 } });
    expect(seenByB).to.deep.equal([{ ran: false }, { ran: false }]);
    // The turn is handed back at the end: pod-b's next tick runs.
    expect(await runMaintenancePass(deps('pod-b'), 2)).to.deep.include({ ran: true });
  });

  describe('in the service', () => {
    let service: TestService;
    before(async () => {
      service = await startTestService(db().url, { MAINTENANCE_INTERVAL_MS: '3600000' }, { startEngine: false });
    });
    after(async () => service?.stop());

    it('applies a live change of MESSAGE_RETENTION_DAYS at the next pass', async () => {
      await everyKind();
      await service.live.update({ MESSAGE_RETENTION_DAYS: '0' });
      expect(await service.maintenance.runPass()).to.deep.equal({
        ran: true,
        removed: { messages: 0, idempotency_keys: 0 },
      });
      await service.live.update({ MESSAGE_RETENTION_DAYS: '1' });
      expect(await service.maintenance.runPass()).to.deep.equal({
        ran: true,
        removed: { messages: 5, idempotency_keys: 0 },
      });
      expect(await contents()).to.deep.equal(['new-pending', 'old-pending', 'old-sending']);
    });

    it('runs passes on its own every MAINTENANCE_INTERVAL_MS, a live setting', async () => {
      await service.live.update({ MESSAGE_RETENTION_DAYS: '30', MAINTENANCE_INTERVAL_MS: '200' });
      await everyKind();
      const left = await eventually(contents, (names) => names.length === 5);
      expect(left).to.deep.equal(['new-pending', 'old-pending', 'old-sending', 'recent-failed', 'recent-sent']);
    });
  });
});
