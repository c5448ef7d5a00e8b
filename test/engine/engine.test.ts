import { expect } from 'chai';
import { stopJobs } from '../../src/db/sqlc/jobs_sql.ts';
import { createEngine, type Engine, type JobHandler } from '../../src/engine/engine.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { useTestDatabase } from '../support/postgres.ts';

/**
 * The engine driven by `runOnce` (one scheduling round plus the runs it
 * queued): rows are backdated instead of waiting on the clock.
 */
describe('engine.runOnce', () => {
  const db = useTestDatabase();
  let engine: Engine;
  const seen: string[] = [];
  let duringRun: (() => Promise<void>) | undefined;
  const handlers: Record<string, JobHandler> = {
    record: {
      async run(context) {
        seen.push(`${context.jobName}@${context.dueAt}`);
        await duringRun?.();
        return { recorded: 1 };
      },
    },
    boom: {
      async run() {
        throw new Error('kaboom');
      },
    },
  };

  before(async () => {
    engine = await createEngine(
      { instanceId: 'engine-test', fetchIntervalMs: 60_000, jobLeaseSeconds: 30, workerCount: 1 },
      { pool: db().pool, databaseUrl: db().url, handlers, logger: silentLogger(), metrics: createMetrics() },
    );
    await db().pool.query(`UPDATE jobs SET status = 'inactive'`);
  });
  after(() => engine.stop(Date.now() + 1_000));
  beforeEach(async () => {
    seen.length = 0;
    duringRun = undefined;
    await db().pool.query(`DELETE FROM jobs WHERE name <> 'message-sender'`);
  });

  const addJob = (name: string, handler: string, nextRunAt: string, interval = 60) =>
    db().pool.query(
      `INSERT INTO jobs (name, handler, interval_seconds, batch_size, status, next_run_at)
       VALUES ($1, $2, $3, 1, 'active', now() + $4::interval)`,
      [name, handler, interval, nextRunAt],
    );
  const job = async (name: string) =>
    (
      await db().pool.query(
        `SELECT status, run_count::int, failure_count::int, last_error, next_run_at > now() AS future,
                extract(epoch FROM next_run_at - created_at)::float8 AS next_after_insert_s, last_triggered_at IS NOT NULL AS triggered
         FROM jobs WHERE name = $1`,
        [name],
      )
    ).rows[0];

  it('runs a due job once, even when ten slots were missed, and moves it to the next slot on its grid', async () => {
    await addJob('late', 'record', '-10 minutes -5 seconds');
    expect(await engine.runOnce()).to.deep.equal(['ok']);
    expect(seen).to.have.length(1);
    const after = await job('late');
    expect(after).to.include({ status: 'active', run_count: 1, failure_count: 0, last_error: null, triggered: true });
    // 10 min 5 s late on a 60 s grid: the next slot is 55 s after the insert (created_at is the
    // insert's now(), which the due time was set from), not 60 s from the run.
    expect(after.next_after_insert_s).to.equal(55);
    expect(await engine.runOnce(), 'nothing is due any more').to.deep.equal([]);
  });

  it('leaves a job that is not due alone', async () => {
    await addJob('later', 'record', '+1 minute');
    expect(await engine.runOnce()).to.deep.equal([]);
    expect(await job('later')).to.include({ status: 'active', run_count: 0, triggered: false });
  });

  it('records a failing handler and an unknown handler on the job, and keeps the job active', async () => {
    await addJob('failing', 'boom', '-1 second');
    await addJob('orphan', 'ghost', '-1 second');
    expect((await engine.runOnce()).sort()).to.deep.equal(['error', 'unknown_handler']);
    expect(await job('failing')).to.include({ status: 'active', failure_count: 1, last_error: 'kaboom' });
    expect((await job('orphan')).last_error).to.match(/unknown handler "ghost" \(registered: boom, record\)/);
  });

  it('lets a stop during the run win: the job stays inactive', async () => {
    await addJob('stopped', 'record', '-1 second');
    duringRun = async () => {
      await stopJobs(db().pool, { name: 'stopped' });
    };
    await engine.runOnce();
    expect((await job('stopped')).status).to.equal('inactive');
  });

  it('takes over a run whose lease expired (a crashed pod) and serves the slot it was claimed for', async () => {
    await db().pool.query(
      `INSERT INTO jobs (name, handler, interval_seconds, batch_size, status, next_run_at,
                         run_id, run_due_at, lease_until, locked_by)
       VALUES ('orphaned-run', 'record', 60, 1, 'in_progress', now() + interval '30 seconds',
               gen_random_uuid(), '2026-01-01T00:00:00Z', now() - interval '1 second', 'crashed-pod')`,
    );
    expect(await engine.runOnce()).to.deep.equal(['ok']);
    expect(seen).to.deep.equal(['orphaned-run@2026-01-01T00:00:00.000Z']);
    expect(await job('orphaned-run')).to.include({ status: 'active', run_count: 1 });
  });

  it('does not take over a run whose lease is still held', async () => {
    await db().pool.query(
      `INSERT INTO jobs (name, handler, interval_seconds, batch_size, status, next_run_at,
                         run_id, run_due_at, lease_until, locked_by)
       VALUES ('held', 'record', 60, 1, 'in_progress', now(), gen_random_uuid(), now(), now() + interval '20 seconds', 'other-pod')`,
    );
    expect(await engine.runOnce()).to.deep.equal([]);
  });
});
