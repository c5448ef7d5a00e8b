// messages/delivery.ts: the delivery client a live configuration change
// leaves in place or rebuilds, and the `delivery` readiness check. Real HTTP
// to the project's webhook sink.
import { expect } from 'chai';
import { resolveConfig } from '../../src/config/config.ts';
import { createDelivery } from '../../src/delivery/delivery.ts';
import { CircuitBreaker } from '../../src/delivery/policies/circuit-breaker.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { type RunningSink, startSink } from '../../src/sink/server.ts';

const message = (id: string) => ({ id, to: '+905551111111', content: `content ${id}` });

describe('delivery client and its readiness check (messages/delivery.ts)', () => {
  let first: RunningSink;
  let second: RunningSink;
  before(async () => {
    first = await startSink();
    second = await startSink();
  });
  after(async () => {
    await first.close();
    await second.close();
  });

  it('without WEBHOOK_URL is a dry run, and says "dry-run" in its check', async () => {
    const delivery = createDelivery(resolveConfig({}).webhook, new CircuitBreaker({ threshold: 5 }), silentLogger());
    expect(delivery.client.mode).to.equal('dry-run');
    expect(await delivery.health.check()).to.equal('dry-run');
    expect(delivery.health).to.include({ name: 'delivery', critical: false });
    const result = await delivery.client.deliver(message('00000000-0000-4000-8000-000000000001'));
    expect(result.outcome).to.equal('sent');
    await delivery.close();
  });

  it('keeps its client when only settings read per run change (attempts, backoff, breaker, rate limit)', async () => {
    const env = { WEBHOOK_URL: `${first.url}/`, WEBHOOK_TIMEOUT_MS: '2000' };
    const delivery = createDelivery(resolveConfig(env).webhook, new CircuitBreaker({ threshold: 5 }), silentLogger());
    const client = delivery.client;
    await delivery.reconfigure(
      resolveConfig({
        ...env,
        WEBHOOK_MAX_ATTEMPTS: '9',
        WEBHOOK_RETRY_BASE_MS: '50',
        WEBHOOK_BREAKER_THRESHOLD: '2',
        WEBHOOK_RATE_LIMIT_PER_SECOND: '7',
      }).webhook,
    );
    expect(delivery.client).to.equal(client);
    // Not closed by the change: it still delivers.
    expect((await delivery.client.deliver(message('00000000-0000-4000-8000-000000000002'))).outcome).to.equal('sent');
    expect(first.received().items.map((item) => item.idempotencyKey)).to.include(
      '00000000-0000-4000-8000-000000000002',
    );
    await delivery.close();
  });

  it('rebuilds its client when the URL, auth header or signing secret changes, and the new one is used', async () => {
    const delivery = createDelivery(
      resolveConfig({ WEBHOOK_URL: `${first.url}/` }).webhook,
      new CircuitBreaker({ threshold: 5 }),
      silentLogger(),
    );
    const before = delivery.client;
    await delivery.reconfigure(
      resolveConfig({
        WEBHOOK_URL: `${second.url}/`,
        WEBHOOK_AUTH_HEADER: 'x-ins-auth-key',
        WEBHOOK_AUTH_VALUE: 's3cret',
      }).webhook,
    );
    expect(delivery.client).to.not.equal(before);
    second.clear();
    const result = await delivery.client.deliver(message('00000000-0000-4000-8000-000000000003'));
    expect(result.outcome).to.equal('sent');
    expect(second.received().items.map((item) => item.idempotencyKey)).to.deep.equal([
      '00000000-0000-4000-8000-000000000003',
    ]);

    // Back to no URL: a dry run again.
    await delivery.reconfigure(resolveConfig({}).webhook);
    expect(delivery.client.mode).to.equal('dry-run');
    await delivery.close();
  });

  it('reports the breaker state while it is not closed, "webhook" while it is', async () => {
    const breaker = new CircuitBreaker({ threshold: 1, firstProbeDelayMs: 60_000 });
    const delivery = createDelivery(resolveConfig({ WEBHOOK_URL: `${first.url}/` }).webhook, breaker, silentLogger());
    expect(await delivery.health.check()).to.equal('webhook');
    breaker.record('transient', false);
    expect(breaker.state).to.equal('open');
    expect(await delivery.health.check()).to.equal('open');
    await delivery.close();
  });
});
