// Runs queued together are fetched together: the scheduler's wake-up reaches
// as many idle workers as it queued runs. pg-boss's notifyWorker wakes one
// worker, and a worker that took a run waits out its 1 s polling interval
// before it fetches again, so the second of two runs queued at once waited
// for another worker's poll (the bench's 1-second jobs: about one trigger in
// 30 was 0.5 s late).
import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import type { PgBoss } from 'pg-boss';
import { type RunRequest, runQueueName, startRunQueue } from '../../src/engine/run-queue.ts';
import { WorkerPool } from '../../src/engine/worker-pool.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { useTestDatabase } from '../support/postgres.ts';
import { eventually } from '../support/service.ts';

/** A well-formed run of a job that does not exist; the test's work function never reads it. */
const run = (): RunRequest => ({
  jobId: '1',
  jobName: 'wake',
  handler: 'send-messages',
  batchSize: 1,
  runId: randomUUID(),
  dueAt: new Date().toISOString(),
});

/**
 * A real run queue and a worker pool of `count` on this suite's database, with
 * every `notifyWorker` call recorded in `woken` (worker ids, in order).
 * `work` is each run: the tests decide when it ends.
 */
function usePool(count: number, work: () => Promise<void>, release: () => void) {
  const db = useTestDatabase();
  const state = { woken: [] as string[] } as { boss: PgBoss; pool: WorkerPool; woken: string[] };
  before(async () => {
    state.boss = await startRunQueue(
      { connectionString: db().url, instanceId: 'wake-test', runTimeoutSeconds: 60 },
      silentLogger(),
    );
    state.pool = new WorkerPool(state.boss, work, silentLogger());
    await state.pool.start(count);
    const notifyWorker = state.boss.notifyWorker.bind(state.boss);
    state.boss.notifyWorker = (id: string) => {
      state.woken.push(id);
      return notifyWorker(id);
    };
  });
  after(async () => {
    release();
    await state.pool?.stop(Date.now() + 1_000);
    await state.boss?.stop({ graceful: false, close: true, timeout: 1_000 });
  });
  return state;
}

describe('waking the worker pool', function () {
  this.timeout(60_000);
  let release: () => void = () => {};
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  // Every run holds its worker until the test releases it.
  const state = usePool(
    4,
    () => held,
    () => release(),
  );
  const { woken } = state;

  const workers = () => state.boss.getWipData().filter((worker) => worker.name === runQueueName);

  it('wakes one idle worker per queued run, never a busy one', async () => {
    expect(workers()).to.have.length(4);
    await state.boss.send(runQueueName, run());
    state.pool.notify(1);
    const [busy] = await eventually(
      async () => workers().filter((worker) => worker.count > 0),
      (list) => list.length === 1,
    );
    woken.length = 0;
    state.pool.notify(2);
    expect(woken).to.have.length(2);
    expect(new Set(woken).size).to.equal(2);
    expect(woken).to.not.include(busy!.id);
    const idle = workers()
      .filter((worker) => worker.count === 0)
      .map((worker) => worker.id);
    expect(idle).to.include.members(woken);
  });

  it('wakes every worker, idle ones first, when more runs were queued than workers are idle', async () => {
    woken.length = 0;
    state.pool.notify(10);
    const busy = workers()
      .filter((worker) => worker.count > 0)
      .map((worker) => worker.id);
    expect(woken).to.have.length(4);
    expect(new Set(woken).size).to.equal(4);
    expect(woken.slice(3)).to.deep.equal(busy);
  });

  it('starts two runs queued together on two workers', async () => {
    const before = workers().filter((worker) => worker.count > 0).length;
    await state.boss.send(runQueueName, run());
    await state.boss.send(runQueueName, run());
    state.pool.notify(2);
    await eventually(
      async () => workers().filter((worker) => worker.count > 0).length,
      (count) => count === before + 2,
    );
  });
});

describe('waking the worker pool for more runs than workers', function () {
  this.timeout(60_000);
  const releases: Array<() => void> = [];
  // Each run holds its worker until the test releases that run.
  const state = usePool(
    2,
    () => new Promise<void>((resolve) => releases.push(resolve)),
    () => {
      for (const release of releases) release();
    },
  );
  const { woken } = state;

  it('wakes one more worker as each run ends while runs beyond the workers are owed one, then stops', async () => {
    const held = (count: number) =>
      eventually(
        async () => releases.length,
        (now) => now === count,
      );
    for (let i = 0; i < 4; i += 1) await state.boss.send(runQueueName, run());
    state.pool.notify(4);
    expect(woken, 'both workers, at once').to.have.length(2);
    await held(2);
    // Runs 3 and 4 are owed a wake-up: each one paid when a run ends.
    for (const [ended, wakeUps] of [
      [0, 3],
      [1, 4],
    ] as const) {
      releases[ended]!();
      await eventually(
        async () => woken.length,
        (count) => count === wakeUps,
      );
      await held(wakeUps);
    }
    // Nothing is owed any more: a run that ends now wakes no one.
    releases[2]!();
    await eventually(
      async () => state.boss.getWipData().filter((worker) => worker.name === runQueueName && worker.count > 0).length,
      (busy) => busy === 1,
    );
    expect(woken).to.have.length(4);
  });
});
