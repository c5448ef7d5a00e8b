// A queue message on job-runs that is not a run (the pg-boss dashboard's
// "Send Job" allows any JSON): the worker logs it with its pg-boss id, counts
// it and dead-letters it once, without the three failing attempts it used to
// get (tester's report, point 5).
import { Writable } from 'node:stream';
import { expect } from 'chai';
import { PgBoss } from 'pg-boss';
import { createEngine, type Engine } from '../../src/engine/engine.ts';
import { deadRunQueueName, runQueueName } from '../../src/engine/run-queue.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { useTestDatabase } from '../support/postgres.ts';
import { eventually } from '../support/service.ts';

describe('malformed run payloads on the queue', () => {
  const db = useTestDatabase();
  const lines: Array<Record<string, unknown>> = [];
  const metrics = createMetrics();
  let engine: Engine;
  let sender: PgBoss;

  before(async () => {
    await db().pool.query(`UPDATE jobs SET status = 'inactive'`);
    const logger = createLogger({
      level: 'info',
      instanceId: 'malformed-test',
      format: 'json',
      destination: new Writable({
        write(chunk, _encoding, done) {
          for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
          done();
        },
      }),
    });
    engine = await createEngine(
      { instanceId: 'malformed-test', fetchIntervalMs: 3_600_000, jobLeaseSeconds: 30, workerCount: 2 },
      { pool: db().pool, databaseUrl: db().url, handlers: { noop: { run: async () => ({}) } }, logger, metrics },
    );
    await engine.start();
    // What the dashboard's "Send Job" does: a plain pg-boss send onto the queue.
    sender = new PgBoss({ connectionString: db().url, schema: 'pgboss', supervise: false, schedule: false, max: 1 });
    sender.on('error', () => {});
    await sender.start();
  });
  after(async () => {
    await sender?.stop({ graceful: false, close: true });
    await engine?.stop(Date.now() + 1_000);
  });

  const rejectedCount = async () =>
    Number(/^job_manager_job_runs_rejected_total (\d+)$/m.exec(await metrics.registry.metrics())?.[1]);
  const stateOf = async (id: string) =>
    (await db().pool.query(`SELECT state, retry_count FROM pgboss.job WHERE name = $1 AND id = $2`, [runQueueName, id]))
      .rows[0];

  it('exports the counter at 0 before anything was rejected', async () => {
    expect(await rejectedCount()).to.equal(0);
  });

  const payloads: Array<[string, object | null, string]> = [
    ['null data', null, 'expected object, received null'],
    [
      'jobId "abc"',
      {
        jobId: 'abc',
        jobName: 'message-sender',
        handler: 'send-messages',
        batchSize: 2,
        runId: '0f8fad5b-d9cb-469f-a165-70867728950e',
        dueAt: '2026-01-01T00:00:00.000Z',
      },
      'jobId: must be a job id (decimal digits)',
    ],
  ];
  for (const [what, data, reason] of payloads) {
    it(`dead-letters a run with ${what} once, logging its pg-boss id and the reason`, async () => {
      const before = await rejectedCount();
      const id = (await sender.send(runQueueName, data as object))!;
      const job = await eventually(
        () => stateOf(id),
        (row) => row?.state === 'failed',
      );
      expect(job.retry_count, 'retried').to.equal(0);
      const dead = await db().pool.query(`SELECT output FROM pgboss.job WHERE name = $1 AND source_id = $2`, [
        deadRunQueueName,
        id,
      ]);
      expect(
        dead.rows.map((row) => row.output),
        'its copy on the dead-letter queue',
      ).to.deep.equal([{ error: `not a run: ${reason}` }]);
      const logged = lines.filter((line) => line.pgBossJobId === id);
      expect(logged).to.have.length(1);
      expect(logged[0]).to.include({ level: 'error', reason, queue: runQueueName, deadLetter: deadRunQueueName });
      expect(logged[0]!.msg).to.equal(
        `queue message ${id} on ${runQueueName} is not a run (${reason}); moved to ${deadRunQueueName} without retries`,
      );
      expect(await rejectedCount()).to.equal(before + 1);
    });
  }

  it('still runs well-formed runs after rejecting malformed ones', async () => {
    await db().pool.query(
      `INSERT INTO jobs (name, handler, interval_seconds, batch_size, status, next_run_at)
       VALUES ('after-malformed', 'noop', 3600, 1, 'active', now() - interval '1 second')`,
    );
    // One scheduling round queues the run; the started worker pool (or runOnce itself) executes it.
    await engine.runOnce();
    const runs = await eventually(
      async () =>
        (await db().pool.query(`SELECT run_count::int AS n FROM jobs WHERE name = 'after-malformed'`)).rows[0].n,
      (n) => n === 1,
    );
    expect(runs).to.equal(1);
  });
});
