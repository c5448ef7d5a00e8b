import { expect } from 'chai';
import { type RunningSink, startSink } from '../../src/sink/server.ts';
import { useTestDatabase } from '../support/postgres.ts';
import { api, eventually, startTestService, type TestService } from '../support/service.ts';

/**
 * WORKER_COUNT fits inside DATABASE_POOL_MAX: a run holds at most one connection at
 * a time and none during a webhook call, so 50 workers all waiting on a slow
 * webhook neither exhaust the pool nor starve the API.
 */
describe('pool sizing with 50 workers and a slow webhook', function () {
  this.timeout(120_000);
  const db = useTestDatabase();
  let sink: RunningSink;
  let service: TestService;
  const instanceId = `pool-test-${process.pid}`;

  before(async () => {
    sink = await startSink({ latencyMs: 1_500 });
    service = await startTestService(db().url, {
      INSTANCE_ID: instanceId,
      WORKER_COUNT: '50',
      DATABASE_POOL_MAX: '56',
      WEBHOOK_URL: `${sink.url}/webhook`,
      // 100 requests in flight, pod-wide (two per run): every run holds a webhook call at once.
      WEBHOOK_CONCURRENCY: '100',
      WEBHOOK_ADAPTIVE_CONCURRENCY: 'false',
    });
    await api(service.url, 'PUT', '/jobs/stop', { name: 'message-sender' });
  });
  after(async () => {
    await service?.stop();
    await sink?.close();
  });

  it('sends everything once with 50 runs in flight, keeps the API answering, and stays within the pool', async () => {
    const messages = Array.from({ length: 200 }, (_, index) => ({ to: '+905551111111', content: `load ${index}` }));
    expect((await api(service.url, 'POST', '/messages/batch', { messages })).status).to.equal(201);
    for (let index = 0; index < 50; index++) {
      const created = await api(service.url, 'POST', '/jobs', {
        name: `sender-${index}`,
        handler: 'send-messages',
        intervalSeconds: 3600,
        batchSize: 4,
        active: true,
      });
      expect(created.status).to.equal(201);
    }
    let mostConnections = 0;
    const apiStatuses: number[] = [];
    await eventually(
      async () => {
        const { rows } = await db().pool.query(
          'SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1',
          [`job-manager ${instanceId}`],
        );
        mostConnections = Math.max(mostConnections, rows[0].n);
        apiStatuses.push((await api(service.url, 'GET', '/jobs')).status);
        return sink.received();
      },
      (report) => report.unique === 200,
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    const report = sink.received();
    expect(report.duplicates).to.deep.equal([]);
    expect(
      apiStatuses.every((status) => status === 200),
      `API answers: ${apiStatuses}`,
    ).to.equal(true);
    expect(mostConnections).to.be.within(1, 56);
    const { rows } = await db().pool.query(
      `SELECT count(*)::int AS failed FROM jobs WHERE name LIKE 'sender-%' AND failure_count > 0`,
    );
    expect(rows[0].failed, 'no run failed for want of a connection').to.equal(0);
  });
});
