import { expect } from 'chai';
import { createEngine, type Engine, type JobHandler } from '../../src/engine/engine.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { useTestDatabase } from '../support/postgres.ts';
import { eventually } from '../support/service.ts';

/**
 * A live WORKER_COUNT change registers the new worker before the old one
 * drains: a run still in flight on the old registration does not stop the
 * pod from taking new runs.
 */
describe('engine.resize', function () {
  this.timeout(60_000);
  const db = useTestDatabase();
  let engine: Engine;
  const started: string[] = [];
  let releaseLong: () => void = () => {};
  const longRunDone = new Promise<void>((resolve) => {
    releaseLong = resolve;
  });
  const handlers: Record<string, JobHandler> = {
    hold: {
      async run(context) {
        started.push(context.jobName);
        if (context.jobName === 'long') await longRunDone;
        return undefined;
      },
    },
  };

  before(async () => {
    await db().pool.query(`UPDATE jobs SET status = 'inactive'`);
    engine = await createEngine(
      { instanceId: 'resize-test', fetchIntervalMs: 500, jobLeaseSeconds: 30, workerCount: 1 },
      { pool: db().pool, databaseUrl: db().url, handlers, logger: silentLogger(), metrics: createMetrics() },
    );
    await engine.start();
  });
  after(async () => {
    releaseLong();
    await engine.stop(Date.now() + 2_000);
  });

  it('takes new runs while a run of the old registration is still in flight', async () => {
    await db().pool.query(
      `INSERT INTO jobs (name, handler, interval_seconds, batch_size, status) VALUES ('long', 'hold', 3600, 1, 'active')`,
    );
    await eventually(
      async () => started.includes('long'),
      (yes) => yes,
    );
    await engine.resize(3);
    await db().pool.query(
      `INSERT INTO jobs (name, handler, interval_seconds, batch_size, status)
       VALUES ('after-1', 'hold', 3600, 1, 'active'), ('after-2', 'hold', 3600, 1, 'active')`,
    );
    // The only worker of the old registration is busy with `long`: these can only run on the new one.
    await eventually(
      async () => started.filter((name) => name.startsWith('after-')).length,
      (count) => count === 2,
      { timeoutMs: 15_000 },
    );
    expect(started.filter((name) => name === 'long')).to.have.length(1);
    releaseLong();
  });
});
