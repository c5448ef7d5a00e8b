import { expect } from 'chai';
import { createClient } from 'redis';
import { type RunningSink, startSink } from '../../src/sink/server.ts';
import { useTestDatabase } from '../support/postgres.ts';
import { runsNotSettled } from '../support/runs.ts';
import { api, eventually, startTestService, type TestService } from '../support/service.ts';

/**
 * The send-messages handler end to end in one service: real PostgreSQL, real
 * HTTP to the project's webhook sink. Each block has its own database.
 */
function deliveryFixture(settings: (sink: RunningSink) => Record<string, string>, sinkOptions = {}) {
  const db = useTestDatabase();
  const state = {} as { sink: RunningSink; service: TestService };
  before(async () => {
    state.sink = await startSink(sinkOptions);
    state.service = await startTestService(db().url, {
      WEBHOOK_RETRY_BASE_MS: '20',
      WEBHOOK_RETRY_MAX_MS: '100',
      ...settings(state.sink),
    });
    await api(state.service.url, 'PUT', '/jobs/stop', { name: 'message-sender' });
  });
  after(async () => {
    await state.service?.stop();
    await state.sink?.close();
  });
  const post = (count: number, prefix = 'm') =>
    api(state.service.url, 'POST', '/messages/batch', {
      messages: Array.from({ length: count }, (_, index) => ({ to: '+905551111111', content: `${prefix} ${index}` })),
    }).then((answer) => answer.body.items as Array<{ id: string }>);
  const runJob = (batchSize: number, intervalSeconds = 1, name = 'sender') =>
    api(state.service.url, 'POST', '/jobs', {
      name,
      handler: 'send-messages',
      intervalSeconds,
      batchSize,
      active: true,
    });
  const message = (id: string) => api(state.service.url, 'GET', `/messages/${id}`).then((answer) => answer.body);
  return { db, state, post, runJob, message };
}

describe('delivery: transient failures', () => {
  // The breaker stays out of this one (threshold 1,000): at a 50 % failure rate, five failures in a row open it,
  // and each failed probe doubles its wait (1, 2, 4, 8 s), so a few unlucky probes outlasted the test.
  const f = deliveryFixture(
    (sink) => ({ WEBHOOK_URL: `${sink.url}/webhook`, WEBHOOK_MAX_ATTEMPTS: '20', WEBHOOK_BREAKER_THRESHOLD: '1000' }),
    { failureRate: 0.5 },
  );

  it('retries with backoff until every message is sent, once each', async () => {
    const items = await f.post(20);
    await f.runJob(20);
    const ids = items.map((item) => item.id);
    await eventually(
      async () => Promise.all(ids.map(f.message)),
      (messages) => messages.every((m) => m.status === 'sent'),
      { timeoutMs: 30_000 },
    );
    const report = f.state.sink.received();
    expect(report.unique).to.equal(20);
    expect(report.duplicates).to.deep.equal([]);
    expect(report.total, 'some attempts failed and were retried').to.be.greaterThan(20);
    const retried = (await Promise.all(ids.map(f.message))).filter((m) => m.attempts > 1);
    expect(retried.length).to.be.greaterThan(0);
    for (const m of await Promise.all(ids.map(f.message))) expect(m.externalMessageId).to.be.a('string');
    const metrics = (await api(f.state.service.url, 'GET', '/metrics')).body as string;
    expect(metrics).to.match(/job_manager_messages_retried_total [1-9]/);
    expect(metrics).to.match(/job_manager_messages_sent_total 20/);
  });
});

describe('delivery: permanent failures', () => {
  const f = deliveryFixture((sink) => ({ WEBHOOK_URL: sink.url }), { statusCode: 400 });

  it('fails a message on a 4xx at once, with the reason', async () => {
    const [item] = await f.post(1);
    await f.runJob(5);
    const failed = await eventually(
      () => f.message(item!.id),
      (m) => m.status === 'failed',
    );
    expect(failed.attempts).to.equal(1);
    expect(failed.lastError).to.match(/^HTTP 400/);
    expect(failed.sentAt).to.equal(null);
  });
});

describe('delivery: attempts are capped', () => {
  const f = deliveryFixture((sink) => ({ WEBHOOK_URL: sink.url, WEBHOOK_MAX_ATTEMPTS: '3' }), { statusCode: 503 });

  it('gives up after WEBHOOK_MAX_ATTEMPTS transient failures', async () => {
    const [item] = await f.post(1);
    await f.runJob(5);
    const failed = await eventually(
      () => f.message(item!.id),
      (m) => m.status === 'failed',
      { timeoutMs: 20_000 },
    );
    expect(failed.attempts).to.equal(3);
    expect(failed.lastError).to.match(/HTTP 503.*gave up after 3 attempts/);
    expect(f.state.sink.received().total).to.equal(3);
  });
});

describe('delivery: the default cadence', () => {
  const f = deliveryFixture((sink) => ({ WEBHOOK_URL: sink.url }));

  it('a job with batch size 2 never sends more than 2 messages per run, oldest first', async () => {
    const items = await f.post(30);
    const startedAt = Date.now();
    await f.runJob(2, 1);
    const job = async () => (await api(f.state.service.url, 'GET', '/jobs/sender')).body;
    // A few runs on the 1 s interval, however long a loaded machine takes for them.
    await eventually(job, (current) => current.runCount >= 3, { timeoutMs: 30_000 });
    await api(f.state.service.url, 'PUT', '/jobs/stop', { name: 'sender' });
    const elapsedSeconds = (Date.now() - startedAt) / 1_000;
    // Settled: every run claimed before the stop has ended (sent, recorded, counted) or was skipped.
    await eventually(
      () => runsNotSettled(f.db().pool, 'sender'),
      (count) => count === 0,
      { timeoutMs: 30_000 },
    );
    const { runCount } = await job();
    const received = f.state.sink.received().items.map((item) => item.idempotencyKey);
    // Never more often than the interval (a slow machine only makes fewer runs).
    expect(runCount).to.be.within(3, elapsedSeconds + 2);
    // Two per run at most; only a run the stop interrupted before its claim may have sent none.
    expect(received.length).to.be.at.most(2 * runCount);
    expect(received.length).to.be.at.least(2 * (runCount - 1));
    expect(received.length % 2, 'whole runs of two').to.equal(0);
    // Oldest first, run by run (the two of one run are delivered concurrently).
    const byRun = (ids: Array<string | null>) =>
      Array.from({ length: ids.length / 2 }, (_, run) => [...ids.slice(2 * run, 2 * run + 2)].sort());
    expect(byRun(received)).to.deep.equal(byRun(items.slice(0, received.length).map((item) => item.id)));
  });
});

describe('delivery: dry-run without a webhook', () => {
  const f = deliveryFixture(() => ({}));

  it('marks messages sent with a dryrun- id and says so in /health-check', async () => {
    const [item] = await f.post(1);
    await f.runJob(1);
    const sent = await eventually(
      () => f.message(item!.id),
      (m) => m.status === 'sent',
    );
    expect(sent.externalMessageId).to.match(/^dryrun-/);
    expect((await api(f.state.service.url, 'GET', '/health-check')).body.checks.delivery).to.equal('dry-run');
    const page = await api(f.state.service.url, 'GET', '/messages/sent');
    expect(page.body.items.map((m: { id: string }) => m.id)).to.deep.equal([item!.id]);
  });
});

describe('delivery: Redis down', () => {
  // A port nothing listens on: Redis is unreachable for the whole test.
  const f = deliveryFixture((sink) => ({ WEBHOOK_URL: sink.url, REDIS_URL: 'redis://127.0.0.1:1' }));

  it('keeps sending, counts the cache errors and reports redis down without failing readiness', async () => {
    const items = await f.post(3);
    await f.runJob(3);
    await eventually(
      async () => Promise.all(items.map((item) => f.message(item.id))),
      (messages) => messages.every((m) => m.status === 'sent'),
    );
    const health = await api(f.state.service.url, 'GET', '/health-check');
    expect(health.status).to.equal(200);
    expect(health.body.checks.redis).to.equal('down');
    const metrics = (await api(f.state.service.url, 'GET', '/metrics')).body as string;
    expect(metrics).to.match(/job_manager_redis_errors_total [1-9]/);
  });
});

describe('delivery: Redis cache', () => {
  const redisUrl = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
  const f = deliveryFixture((sink) => ({ WEBHOOK_URL: sink.url, REDIS_URL: redisUrl, REDIS_TTL_SECONDS: '3600' }));
  const redis = createClient({ url: redisUrl, socket: { reconnectStrategy: false, connectTimeout: 1_000 } });
  redis.on('error', () => {});

  before(async function () {
    try {
      await redis.connect();
    } catch {
      this.skip(); // no Redis on this machine: the Redis-down case above still runs
    }
  });
  after(async () => {
    if (redis.isOpen) await redis.quit();
  });

  it('stores the provider id and sending time per message with the configured TTL', async () => {
    const [item] = await f.post(1);
    await f.runJob(1);
    const sent = await eventually(
      () => f.message(item!.id),
      (m) => m.status === 'sent',
    );
    const key = `job-manager:sent:${item!.id}`;
    const cached = JSON.parse((await redis.get(key)) ?? 'null');
    expect(cached.messageId).to.equal(sent.externalMessageId);
    expect(Date.parse(cached.sentAt)).to.be.closeTo(Date.parse(sent.sentAt), 5_000);
    const ttl = await redis.ttl(key);
    expect(ttl).to.be.within(3500, 3600);
    expect((await api(f.state.service.url, 'GET', '/health-check')).body.checks.redis).to.equal('ok');
  });
});
