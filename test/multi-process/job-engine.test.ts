import { expect } from 'chai';
import { useTestDatabase } from '../support/postgres.ts';
import { startTestPod, stopAll, type TestProcess } from '../support/processes.ts';
import { createTestRunsTable } from '../support/recording-handler.ts';
import { runsNotSettled } from '../support/runs.ts';
import { api, eventually } from '../support/service.ts';

/**
 * Real processes on one database: three pods, four 1-second jobs. Every
 * (job, slot) runs exactly once, no slot is skipped while all pods are up,
 * and a pod killed mid-run has its run taken over after the lease expires.
 */
describe('job engine across processes', function () {
  this.timeout(180_000);
  const db = useTestDatabase();
  const pods: TestProcess[] = [];
  const env = () => ({ DATABASE_URL: db().url, JOB_LEASE_SECONDS: '2', FETCH_INTERVAL_MS: '10000' });

  before(async () => {
    await db().pool.query(createTestRunsTable);
    pods.push(...(await Promise.all(['pod-a', 'pod-b', 'pod-c'].map((name) => startTestPod(name, env())))));
    await api(pods[0]!.url, 'PUT', '/jobs/stop', { name: 'message-sender' });
  });
  after(() => stopAll(pods));

  it('runs every slot of every 1 s job exactly once across three pods', async () => {
    const names = ['tick-1', 'tick-2', 'tick-3', 'tick-4'];
    const createdAt = Date.now();
    for (const [index, name] of names.entries()) {
      const pod = pods[index % pods.length]!;
      const created = await api(pod.url, 'POST', '/jobs', {
        name,
        handler: 'record-run',
        intervalSeconds: 1,
        batchSize: 1,
        active: true,
      });
      expect(created.status).to.equal(201);
    }
    // At least 12 slots of every job, however long a loaded machine takes for them.
    await eventually(
      async () =>
        (
          await db().pool.query(
            "SELECT count(DISTINCT job_name)::int AS n FROM (SELECT job_name FROM test_runs WHERE job_name LIKE 'tick-%' GROUP BY job_name HAVING count(*) >= 12) AS enough",
          )
        ).rows[0].n,
      (jobsWithEnough) => jobsWithEnough === names.length,
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    const stopped = await api(pods[1]!.url, 'PUT', '/jobs/stop');
    const elapsedSeconds = (Date.now() - createdAt) / 1_000;
    expect(stopped.body.jobs.every((job: { status: string }) => job.status === 'inactive')).to.equal(true);
    // Runs in flight finish (or, claimed but not begun, are skipped) before the rows are read.
    for (const name of names) {
      await eventually(
        () => runsNotSettled(db().pool, name),
        (count) => count === 0,
        { timeoutMs: 20_000 },
      );
    }

    const { rows } = await db().pool.query<{ job_name: string; slots: string[]; instances: string[] }>(
      `SELECT job_name,
              array_agg(to_char(due_at AT TIME ZONE 'UTC', 'HH24:MI:SS.MS') ORDER BY due_at) AS slots,
              array_agg(DISTINCT instance) AS instances
       FROM test_runs WHERE job_name LIKE 'tick-%' GROUP BY job_name ORDER BY job_name`,
    );
    expect(rows.map((row) => row.job_name)).to.deep.equal(names);
    const allInstances = new Set<string>();
    for (const row of rows) {
      expect(new Set(row.slots).size, `${row.job_name} ran a slot twice: ${row.slots}`).to.equal(row.slots.length);
      // Never more often than its 1 s interval (a slow machine only makes fewer runs).
      expect(row.slots.length, `${row.job_name} ran ${row.slots.length} times in ${elapsedSeconds} s`).to.be.within(
        12,
        elapsedSeconds + 2,
      );
      const { rows: gaps } = await db().pool.query(
        `SELECT due_at - lag(due_at) OVER (ORDER BY due_at) AS step FROM test_runs WHERE job_name = $1`,
        [row.job_name],
      );
      const steps = gaps.slice(1).map((gap) => gap.step.seconds ?? 0);
      expect(
        steps.every((seconds) => seconds === 1),
        `${row.job_name} skipped a slot: ${row.slots}`,
      ).to.equal(true);
      for (const instance of row.instances) allInstances.add(instance);
    }
    // The work really is spread: more than one pod ran runs.
    expect(allInstances.size).to.be.greaterThan(1);
  });

  it('a start or stop on one pod takes effect on every pod', async () => {
    await api(pods[2]!.url, 'PUT', '/jobs/start', { name: 'tick-1' });
    const seen = await Promise.all(pods.map((pod) => api(pod.url, 'GET', '/jobs/tick-1')));
    expect(seen.map((answer) => answer.body.status)).to.satisfy((states: string[]) =>
      states.every((state) => state === 'active' || state === 'in_progress'),
    );
    const runsOfTick1 = async () =>
      (await db().pool.query("SELECT count(*)::int AS n FROM test_runs WHERE job_name = 'tick-1'")).rows[0].n as number;
    const before = await runsOfTick1();
    await eventually(runsOfTick1, (count) => count > before, { timeoutMs: 20_000 });
    await api(pods[0]!.url, 'PUT', '/jobs/stop', { name: 'tick-1' });
    // Every run claimed before the stop has ended or was skipped: from here on nothing may run.
    await eventually(
      () => runsNotSettled(db().pool, 'tick-1'),
      (count) => count === 0,
      { timeoutMs: 20_000 },
    );
    const settled = await runsOfTick1();
    await new Promise((resolve) => setTimeout(resolve, 2_500)); // two more slots of the 1 s job
    expect(await runsOfTick1(), 'runs after the stop').to.equal(settled);
  });

  it('takes over the run of a pod killed with SIGKILL once its lease expires', async () => {
    const created = await api(pods[0]!.url, 'POST', '/jobs', {
      name: 'slow-sleep4000',
      handler: 'record-run',
      intervalSeconds: 3600,
      batchSize: 1,
      active: true,
    });
    expect(created.status).to.equal(201);
    const running = await eventually(
      async () =>
        (await db().pool.query("SELECT instance, due_at, run_id FROM test_runs WHERE job_name = 'slow-sleep4000'"))
          .rows,
      (rows) => rows.length === 1,
    );
    const victim = pods.find((pod) => pod.name === running[0].instance)!;
    const killedAt = Date.now();
    victim.kill('SIGKILL');
    await victim.exited;

    const runs = await eventually(
      async () =>
        (
          await db().pool.query(
            "SELECT instance, due_at, run_id, finished_at, started_at FROM test_runs WHERE job_name = 'slow-sleep4000' ORDER BY started_at",
          )
        ).rows,
      (rows) => rows.length >= 2 && rows[1].finished_at !== null,
      { timeoutMs: 30_000 },
    );
    expect(runs[1].instance).to.not.equal(victim.name);
    expect(runs[1].due_at.getTime(), 'the takeover serves the same slot').to.equal(runs[0].due_at.getTime());
    expect(runs[1].started_at.getTime() - killedAt, 'not before the lease (2 s) could expire').to.be.greaterThan(1_000);
    const job = await eventually(
      () => api(pods.find((pod) => pod !== victim)!.url, 'GET', '/jobs/slow-sleep4000'),
      (answer) => answer.body.status === 'active',
    );
    expect(job.body.runCount).to.equal(1);
    pods.splice(pods.indexOf(victim), 1);
  });

  it('SIGTERM during a run lets the run finish and exits 0', async () => {
    const pod = await startTestPod('pod-term', env());
    pods.push(pod);
    // Whichever pod claims the run is the one sent SIGTERM.
    const created = await api(pod.url, 'POST', '/jobs', {
      name: 'term-sleep3000',
      handler: 'record-run',
      intervalSeconds: 3600,
      batchSize: 1,
      active: true,
    });
    expect(created.status).to.equal(201);
    const started = await eventually(
      async () => (await db().pool.query("SELECT instance FROM test_runs WHERE job_name = 'term-sleep3000'")).rows,
      (rows) => rows.length === 1,
    );
    const runner = pods.find((candidate) => candidate.name === started[0].instance)!;
    runner.kill('SIGTERM');
    expect((await runner.exited).code).to.equal(0);
    const { rows } = await db().pool.query("SELECT finished_at FROM test_runs WHERE job_name = 'term-sleep3000'");
    expect(rows).to.have.length(1);
    expect(rows[0].finished_at, 'the run completed before the process exited').to.not.equal(null);
    pods.splice(pods.indexOf(runner), 1);
    const job = await api(pods[0]!.url, 'GET', '/jobs/term-sleep3000');
    expect(job.body.status).to.equal('active');
    expect(job.body.runCount).to.equal(1);
  });
});
