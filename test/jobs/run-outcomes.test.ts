import { expect } from 'chai';
import type { JobHandler } from '../../src/engine/handler.ts';
import { useTestDatabase } from '../support/postgres.ts';
import { api, eventually, startTestService, type TestService } from '../support/service.ts';

/**
 * What the model system got wrong: one failing run blocked all later work, and
 * the configured worker count was ignored. Here a failing handler, a handler
 * nobody registered, and a healthy job run side by side.
 */
describe('run outcomes and the worker pool', () => {
  const db = useTestDatabase();
  let service: TestService;
  let running = 0;
  let mostAtOnce = 0;
  const handlers: Record<string, JobHandler> = {
    boom: {
      async run() {
        throw new Error('kaboom');
      },
    },
    fine: { run: async () => ({ ok: true }) },
    slow: {
      async run() {
        running += 1;
        mostAtOnce = Math.max(mostAtOnce, running);
        await new Promise((resolve) => setTimeout(resolve, 800));
        running -= 1;
        return undefined;
      },
    },
  };

  before(async () => {
    service = await startTestService(db().url, { WORKER_COUNT: '2' }, { handlers });
    await api(service.url, 'PUT', '/jobs/stop', { name: 'message-sender' });
  });
  after(() => service.stop());
  const job = (name: string) => api(service.url, 'GET', `/jobs/${name}`).then((answer) => answer.body);

  it('records a failing run on the job and keeps running it and every other job', async () => {
    // A job whose handler is not registered here (say, removed in a newer deploy).
    await db().pool.query(
      "INSERT INTO jobs (name, handler, interval_seconds, batch_size, status) VALUES ('orphan', 'ghost', 1, 1, 'active')",
    );
    for (const [name, handler] of [
      ['failing', 'boom'],
      ['healthy', 'fine'],
    ]) {
      await api(service.url, 'POST', '/jobs', { name, handler, intervalSeconds: 1, batchSize: 1, active: true });
    }
    await eventually(
      () => Promise.all(['failing', 'healthy', 'orphan'].map(job)),
      (jobs) => jobs.every((j) => j.runCount >= 3),
      { timeoutMs: 15_000 },
    );
    const [failing, healthy, orphan] = await Promise.all(['failing', 'healthy', 'orphan'].map(job));
    expect(failing).to.include({ lastError: 'kaboom' });
    expect(failing.failureCount).to.equal(failing.runCount);
    expect(failing.status).to.be.oneOf(['active', 'in_progress']);
    expect(orphan.lastError).to.match(/unknown handler "ghost"/);
    expect(healthy).to.include({ failureCount: 0, lastError: null });
    const metrics = (await api(service.url, 'GET', '/metrics')).body as string;
    expect(metrics).to.match(/job_manager_job_runs_total\{job="failing",outcome="error"\} [1-9]/);
    expect(metrics).to.match(/job_manager_job_runs_total\{job="orphan",outcome="unknown_handler"\} [1-9]/);
    expect(metrics).to.match(/job_manager_job_runs_total\{job="healthy",outcome="ok"\} [1-9]/);
    await api(service.url, 'PUT', '/jobs/stop');
  });

  it('runs at most WORKER_COUNT runs at once on a pod', async () => {
    // Created together, so four runs are due at once however slowly the requests are answered.
    await Promise.all(
      ['slow-1', 'slow-2', 'slow-3', 'slow-4'].map((name) =>
        api(service.url, 'POST', '/jobs', { name, handler: 'slow', intervalSeconds: 60, batchSize: 1, active: true }),
      ),
    );
    await eventually(
      () => Promise.all(['slow-1', 'slow-2', 'slow-3', 'slow-4'].map(job)),
      (jobs) => jobs.every((j) => j.runCount === 1),
      { timeoutMs: 15_000 },
    );
    expect(mostAtOnce).to.equal(2);
  });
});
