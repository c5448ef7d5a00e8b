import { expect } from 'chai';
import pg from 'pg';
import {
  beginJobExecution,
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
import { claimMessages, insertMessages } from '../../src/db/sqlc/messages_sql.ts';
import { useTestPool } from '../support/postgres.ts';

/** Every job query and state transition, against a real PostgreSQL. */
describe('job queries and state transitions', () => {
  const { db, pool } = useTestPool();
  const claim = (owner = 'pod-1', leaseSeconds = 30) => claimDueJobs(pool(), { maxJobs: 10, owner, leaseSeconds });
  const job = async (name: string) => (await getJobByName(pool(), { name }))!;
  /** Starts an execution of a claimed run, as a worker does; resolves with its execution id. */
  const begin = async (run: { id: string; runId: string | null }, owner = 'pod-1') =>
    (await beginJobExecution(pool(), { id: run.id, runId: run.runId, owner, leaseSeconds: 30 }))?.executionId;
  const renew = (run: { id: string }, executionId: string | undefined) =>
    renewJobLease(pool(), { id: run.id, executionId: executionId!, leaseSeconds: 30 });
  const finish = (run: { id: string; runId: string | null }, executionId: string | undefined, error: string | null) =>
    finishJobRun(pool(), { id: run.id, runId: run.runId!, executionId: executionId!, error });

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
    const firstExecution = await begin(first!);
    expect(await claim('pod-2')).to.have.length(0);
    await pool().query("UPDATE jobs SET lease_until = now() - interval '1 second' WHERE name = 'a'");
    const [second] = await claim('pod-2');
    expect(second!.runId).to.not.equal(first!.runId);
    expect(second!.dueAt!.getTime()).to.equal(first!.dueAt!.getTime());
    const secondExecution = await begin(second!, 'pod-2');
    // The old run has lost its lease: renewing it fails, so it knows to stop.
    expect(await renew(first!, firstExecution)).to.equal(null);
    expect(await renew(second!, secondExecution)).to.deep.equal({ id: second!.id });
  });

  it('returns the job to active when its run finishes, recording the outcome', async () => {
    await create('a');
    const [run] = await claim();
    const finished = await finish(run!, await begin(run!), null);
    expect(finished?.status).to.equal('active');
    const after = await job('a');
    expect(after.lastTriggeredAt).to.be.instanceOf(Date);
    expect([after.runCount, after.failureCount, after.lastError]).to.deep.equal([1, 0, null]);
    const [next] = await (async () => {
      await pool().query('UPDATE jobs SET next_run_at = now()');
      return claim();
    })();
    await finish(next!, await begin(next!), 'webhook down');
    const failed = await job('a');
    expect([failed.runCount, failed.failureCount, failed.lastError]).to.deep.equal([2, 1, 'webhook down']);
  });

  it('a stop during a run wins: the finishing run leaves the job inactive', async () => {
    await create('a');
    const [run] = await claim();
    const execution = await begin(run!);
    expect(await stopJobs(pool(), { name: 'a' })).to.have.length(1);
    expect((await job('a')).status).to.equal('inactive');
    expect(await renew(run!, execution)).to.equal(null);
    const finished = await finish(run!, execution, null);
    expect(finished?.status).to.equal('inactive');
    expect((await job('a')).runCount).to.equal(1);
  });

  describe('one execution per run (the execution fence)', () => {
    const claimFenced = (executionId: string | undefined) =>
      claimMessages(pool(), { owner: 'pod', maxMessages: 10, leaseSeconds: 60, executionId: executionId! });
    beforeEach(async () => {
      await pool().query('DELETE FROM messages');
      await insertMessages(pool(), {
        recipients: ['+905551111111', '+905551111111'],
        contents: ['a', 'b'],
        sendAts: ['', ''],
        traceParent: null,
      });
    });

    it('a retry of a run whose first execution is only frozen does not start while that execution holds its lease', async () => {
      await create('a');
      const [run] = await claim();
      const first = await begin(run!);
      expect(first).to.be.a('string');
      // pg-boss hands the same run to another pod: refused, the first execution keeps it.
      expect(await begin(run!, 'pod-2')).to.equal(undefined);
      expect(await renew(run!, first)).to.deep.equal({ id: run!.id });
      expect(await claimFenced(first)).to.have.length(2);
    });

    it('no lease setting reopens it: once the lease expired, a new execution supersedes the old, which can no longer renew, claim or finish', async () => {
      await create('a');
      const [run] = await claim('pod-1', 1);
      const first = await begin(run!);
      await pool().query("UPDATE jobs SET lease_until = now() - interval '1 second' WHERE name = 'a'");
      const second = await begin(run!, 'pod-2');
      expect(second).to.be.a('string').and.not.equal(first);
      expect(await renew(run!, first)).to.equal(null);
      expect(await claimFenced(first), 'a superseded execution claims nothing').to.have.length(0);
      expect(await finish(run!, first, 'old execution failed')).to.equal(null);
      const untouched = await job('a');
      expect([untouched.status, untouched.runCount, untouched.lastError]).to.deep.equal(['in_progress', 0, null]);
      expect(await claimFenced(second)).to.have.length(2);
      expect((await finish(run!, second, null))?.status).to.equal('active');
      expect((await job('a')).runCount).to.equal(1);
    });

    it('stop then start during a run: the old run stops claiming and its end cannot overwrite the new run', async () => {
      await create('a');
      const [old] = await claim();
      const oldExecution = await begin(old!);
      await stopJobs(pool(), { name: 'a' });
      await startJobs(pool(), { name: 'a' });
      const [next] = await claim('pod-2');
      const nextExecution = await begin(next!, 'pod-2');
      expect(await claimFenced(oldExecution), 'the stopped run claims nothing more').to.have.length(0);
      expect(await finish(next!, nextExecution, 'new run failed')).to.deep.equal({ status: 'active' });
      // The old run ends after the new one: no row, the new run's outcome stays.
      expect(await finish(old!, oldExecution, null)).to.equal(null);
      const after = await job('a');
      expect([after.status, after.runCount, after.failureCount, after.lastError]).to.deep.equal([
        'active',
        1,
        1,
        'new run failed',
      ]);
    });
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
    // One transaction, so every now() below is the same instant and the waits are exact.
    const client = await pool().connect();
    try {
      await client.query('BEGIN');
      await client.query("UPDATE jobs SET next_run_at = now() + interval '90 seconds'");
      expect((await nextJobWakeUp(client))?.waitMs).to.equal(90_000);
      await client.query("UPDATE jobs SET next_run_at = now() - interval '5 seconds'");
      await claimDueJobs(client, { maxJobs: 10, owner: 'pod-1', leaseSeconds: 20 });
      // Running now: the next moment of interest is the lease expiry (20 s), or the next slot (55 s) if sooner.
      expect((await nextJobWakeUp(client))?.waitMs).to.equal(20_000);
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
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
