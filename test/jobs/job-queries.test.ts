import { expect } from 'chai';
import pg from 'pg';
import {
  claimDueJobs,
  createJob,
  finishJobRun,
  getJobByName,
  listenJobsChanged,
  nextJobWakeUp,
  notifyJobsChanged,
  releaseJobLeases,
  renewJobLease,
  startJobs,
  stopJobs,
  updateJobSettings,
} from '../../src/db/sqlc/jobs_sql.ts';
import { useTestDatabase } from '../support/postgres.ts';

/** Every job query and state transition, against a real PostgreSQL. */
describe('job queries and state transitions', () => {
  const db = useTestDatabase();
  const pool = () => db().pool;
  const claim = (owner = 'pod-1', leaseSeconds = 30) => claimDueJobs(pool(), { maxJobs: 10, owner, leaseSeconds });
  const job = async (name: string) => (await getJobByName(pool(), { name }))!;

  beforeEach(async () => {
    await pool().query('DELETE FROM jobs');
  });

  const create = (name: string, status = 'active', intervalSeconds = 60) =>
    createJob(pool(), { name, handler: 'send-messages', intervalSeconds, batchSize: 2, status });

  it('creates a job once; a duplicate name returns nothing', async () => {
    expect((await create('a'))?.name).to.equal('a');
    expect(await create('a')).to.equal(null);
  });

  it('refuses rows that break the invariants', async () => {
    await expectViolation(create('bad', 'running'), 'jobs_status_valid');
    await expectViolation(create('zero', 'active', 0), 'jobs_interval_seconds_range');
    await expectViolation(create('Has Spaces'), 'jobs_name_format');
    await create('ok');
    await expectViolation(
      pool().query("UPDATE jobs SET status = 'in_progress' WHERE name = 'ok'"),
      'jobs_run_fields_iff_in_progress',
    );
  });

  it('claims a due active job once, marks it in_progress and advances next_run_at by whole intervals', async () => {
    await create('a');
    await pool().query("UPDATE jobs SET next_run_at = now() - interval '150 seconds' WHERE name = 'a'");
    const before = await job('a');
    const [claimed, again] = await Promise.all([claim('pod-1'), claim('pod-2')]);
    const all = [...claimed, ...again];
    expect(all).to.have.length(1);
    expect(all[0]!.dueAt!.getTime()).to.equal(before.nextRunAt.getTime());
    const after = await job('a');
    expect(after.status).to.equal('in_progress');
    // 150 s late on a 60 s grid: slots at +60 and +120 coalesce, the next one is +180.
    expect(after.nextRunAt.getTime() - before.nextRunAt.getTime()).to.equal(180_000);
  });

  it('does not claim inactive jobs, jobs not yet due, or running jobs whose lease holds', async () => {
    await create('off', 'inactive');
    await create('later');
    await pool().query("UPDATE jobs SET next_run_at = now() + interval '1 hour' WHERE name = 'later'");
    await create('running');
    expect(await claim()).to.have.length(1);
    expect(await claim()).to.have.length(0);
  });

  it('takes over a run whose lease expired, for the same slot', async () => {
    await create('a');
    const [first] = await claim('pod-1', 1);
    expect(await claim('pod-2')).to.have.length(0);
    await pool().query("UPDATE jobs SET lease_until = now() - interval '1 second' WHERE name = 'a'");
    const [second] = await claim('pod-2');
    expect(second!.runId).to.not.equal(first!.runId);
    expect(second!.dueAt!.getTime()).to.equal(first!.dueAt!.getTime());
    // The old run has lost its lease: renewing it fails, so it knows to stop.
    expect(await renewJobLease(pool(), { id: first!.id, runId: first!.runId, leaseSeconds: 30 })).to.equal(null);
    expect(await renewJobLease(pool(), { id: second!.id, runId: second!.runId, leaseSeconds: 30 })).to.deep.equal({
      id: second!.id,
    });
  });

  it('returns the job to active when its run finishes, recording the outcome', async () => {
    await create('a');
    const [run] = await claim();
    const finished = await finishJobRun(pool(), { id: run!.id, runId: run!.runId, error: null });
    expect(finished?.status).to.equal('active');
    const after = await job('a');
    expect(after.lastTriggeredAt).to.be.instanceOf(Date);
    expect([after.runCount, after.failureCount, after.lastError]).to.deep.equal([1, 0, null]);
    const [next] = await (async () => {
      await pool().query('UPDATE jobs SET next_run_at = now()');
      return claim();
    })();
    await finishJobRun(pool(), { id: next!.id, runId: next!.runId, error: 'webhook down' });
    const failed = await job('a');
    expect([failed.runCount, failed.failureCount, failed.lastError]).to.deep.equal([2, 1, 'webhook down']);
  });

  it('a stop during a run wins: the finishing run leaves the job inactive', async () => {
    await create('a');
    const [run] = await claim();
    expect(await stopJobs(pool(), { name: 'a' })).to.have.length(1);
    expect((await job('a')).status).to.equal('inactive');
    expect(await renewJobLease(pool(), { id: run!.id, runId: run!.runId, leaseSeconds: 30 })).to.equal(null);
    const finished = await finishJobRun(pool(), { id: run!.id, runId: run!.runId, error: null });
    expect(finished?.status).to.equal('inactive');
    expect((await job('a')).runCount).to.equal(1);
  });

  it('start is idempotent and makes an inactive job due now; stop is idempotent', async () => {
    await create('a', 'inactive');
    await create('b', 'active');
    await pool().query("UPDATE jobs SET next_run_at = now() + interval '1 hour'");
    expect(await startJobs(pool(), { name: null })).to.have.length(1);
    expect(await startJobs(pool(), { name: null })).to.have.length(0);
    const a = await job('a');
    expect(a.status).to.equal('active');
    expect(a.nextRunAt.getTime()).to.be.at.most(Date.now() + 1_000);
    expect((await job('b')).nextRunAt.getTime(), 'an active job keeps its schedule').to.be.greaterThan(
      Date.now() + 3_000_000,
    );
    expect(await stopJobs(pool(), { name: null })).to.have.length(2);
    expect(await stopJobs(pool(), { name: null })).to.have.length(0);
  });

  it('changes interval and batch size, keeping a value passed as null', async () => {
    await create('a');
    const changed = await updateJobSettings(pool(), { name: 'a', intervalSeconds: 5, batchSize: null });
    expect([changed?.intervalSeconds, changed?.batchSize]).to.deep.equal([5, 2]);
    expect(await updateJobSettings(pool(), { name: 'nope', intervalSeconds: 5, batchSize: 1 })).to.equal(null);
  });

  it('tells the fetcher how long it may sleep: until the earliest due time or lease expiry', async () => {
    expect((await nextJobWakeUp(pool()))?.waitMs, 'nothing scheduled').to.equal(null);
    await create('a');
    await pool().query("UPDATE jobs SET next_run_at = now() + interval '90 seconds'");
    expect((await nextJobWakeUp(pool()))?.waitMs).to.be.within(89_000, 90_000);
    await pool().query("UPDATE jobs SET next_run_at = now() - interval '5 seconds'");
    await claim('pod-1', 20);
    // Running now: the next moment of interest is the lease expiry, or the next slot if sooner.
    expect((await nextJobWakeUp(pool()))?.waitMs).to.be.within(19_000, 20_000);
  });

  it('announces job changes to every listener', async () => {
    const listener = new pg.Client({ connectionString: db().url });
    await listener.connect();
    try {
      const heard = new Promise<string | undefined>((resolve) =>
        listener.on('notification', (n) => resolve(n.payload)),
      );
      await listenJobsChanged(listener);
      await notifyJobsChanged(pool(), { reason: 'started all' });
      expect(await heard).to.equal('started all');
    } finally {
      await listener.end();
    }
  });

  it('releases the leases of one pod at shutdown so another pod takes over at once', async () => {
    await create('a');
    await claim('pod-1');
    expect(await releaseJobLeases(pool(), { owner: 'pod-2' })).to.have.length(0);
    expect(await releaseJobLeases(pool(), { owner: 'pod-1' })).to.have.length(1);
    expect(await claim('pod-2')).to.have.length(1);
  });
});

async function expectViolation(promise: Promise<unknown>, constraint: string): Promise<void> {
  let error: any;
  await promise.catch((failure: unknown) => (error = failure));
  expect(error?.constraint ?? error?.message, `expected a violation of ${constraint}`).to.equal(constraint);
}
