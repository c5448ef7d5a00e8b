// delivery/delivery.ts: the component's subscription to the live settings
// (the client a change leaves in place or rebuilds, the breaker threshold)
// and its readiness checks. Real HTTP to the project's webhook sink, a real
// PostgreSQL for the run that opens the breaker.
import { expect } from 'chai';
import { LiveConfig } from '../../src/config/live-config.ts';
import { createPool, type Pool } from '../../src/db/pool.ts';
import { insertMessages } from '../../src/db/sqlc/messages_sql.ts';
import { createDelivery, type Delivery } from '../../src/delivery/delivery.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { type RunningSink, startSink } from '../../src/sink/server.ts';
import { useTestDatabase } from '../support/postgres.ts';

const message = (id: string) => ({ id, to: '+905551111111', content: `content ${id}` });

describe('delivery component: live settings and readiness checks (delivery/delivery.ts)', () => {
  const db = useTestDatabase();
  let pool: Pool;
  let first: RunningSink;
  let second: RunningSink;
  let delivery: Delivery | undefined;
  before(async () => {
    pool = createPool({ connectionString: db().url, max: 2 });
    first = await startSink();
    second = await startSink();
  });
  after(async () => {
    await first.close();
    await second.close();
    await pool.end();
  });
  afterEach(async () => {
    await delivery?.close();
    delivery = undefined;
  });
  /** The component over a real LiveConfig: `env` is the environment, `update` the Vault layer. */
  const start = async (env: Record<string, string>, vault: Record<string, string> = {}) => {
    const live = new LiveConfig(env, vault);
    delivery = await createDelivery(live, { pool, metrics: createMetrics(), logger: silentLogger() });
    return { live, delivery };
  };

  it('without WEBHOOK_URL is a dry run, says "dry-run" in its check, and "disabled" for Redis without REDIS_URL', async () => {
    const { delivery } = await start({});
    expect(delivery.client.mode).to.equal('dry-run');
    expect(await delivery.health.check()).to.equal('dry-run');
    expect(delivery.health).to.include({ name: 'delivery', critical: false });
    expect(delivery.cacheHealth).to.include({ name: 'redis', critical: false });
    expect(await delivery.cacheHealth.check()).to.equal('disabled');
    const result = await delivery.client.deliver(message('00000000-0000-4000-8000-000000000001'));
    expect(result.outcome).to.equal('sent');
  });

  it('keeps its client when only settings read per run change (attempts, backoff, breaker, rate limit)', async () => {
    const { live, delivery } = await start({ WEBHOOK_URL: `${first.url}/`, WEBHOOK_TIMEOUT_MS: '2000' });
    const client = delivery.client;
    await live.update({
      WEBHOOK_MAX_ATTEMPTS: '9',
      WEBHOOK_RETRY_BASE_MS: '50',
      WEBHOOK_BREAKER_THRESHOLD: '2',
      WEBHOOK_RATE_LIMIT_PER_SECOND: '7',
    });
    expect(delivery.client).to.equal(client);
    // Not closed by the change: it still delivers.
    expect((await delivery.client.deliver(message('00000000-0000-4000-8000-000000000002'))).outcome).to.equal('sent');
    expect(first.received().items.map((item) => item.idempotencyKey)).to.include(
      '00000000-0000-4000-8000-000000000002',
    );
  });

  it('rebuilds its client when the URL, auth header or signing secret changes, and the new one is used', async () => {
    const { live, delivery } = await start({}, { WEBHOOK_URL: `${first.url}/` });
    const before = delivery.client;
    await live.update({
      WEBHOOK_URL: `${second.url}/`,
      WEBHOOK_AUTH_HEADER: 'x-ins-auth-key',
      WEBHOOK_AUTH_VALUE: 's3cret',
    });
    expect(delivery.client).to.not.equal(before);
    second.clear();
    const result = await delivery.client.deliver(message('00000000-0000-4000-8000-000000000003'));
    expect(result.outcome).to.equal('sent');
    expect(second.received().items.map((item) => item.idempotencyKey)).to.deep.equal([
      '00000000-0000-4000-8000-000000000003',
    ]);

    // Back to no URL: a dry run again.
    await live.update({});
    expect(delivery.client.mode).to.equal('dry-run');
  });

  it('takes a live breaker threshold, and reports the breaker state while it is not closed, "webhook" while it is', async () => {
    const down = await startSink({ statusCode: 503 });
    try {
      const { live, delivery } = await start({ WEBHOOK_URL: `${down.url}/` });
      await live.update({ WEBHOOK_BREAKER_THRESHOLD: '1' });
      expect(await delivery.health.check()).to.equal('webhook');
      await insertMessages(pool, { recipients: ['+905551111111'], contents: ['x'], sendAts: [''], traceParent: null });
      const summary = await delivery.run({ runId: 'run-1', batchSize: 1, signal: new AbortController().signal });
      // One transient failure opened it: the threshold of 1 came from the live change (the default is 5).
      expect(summary).to.include({ claimed: 1, retried: 1, failed: 0 });
      expect(await delivery.health.check()).to.equal('open');
    } finally {
      await down.close();
    }
  });
});
