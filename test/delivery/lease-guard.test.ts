import { expect } from 'chai';
import { createPool, type Pool } from '../../src/db/pool.ts';
import { deliverBatch } from '../../src/delivery/loop.ts';
import { ConcurrencyGate, lanes } from '../../src/delivery/policies/lanes.ts';
import { leaseGuard, leaseMarginMs } from '../../src/delivery/policies/lease-guard.ts';
import type { RunScope } from '../../src/delivery/policy.ts';
import type { RunSettings } from '../../src/delivery/run-settings.ts';
import { disabledSentCache } from '../../src/delivery/sent-cache.ts';
import type { DeliveryClient, DeliveryResult, OutboundMessage } from '../../src/delivery/webhook.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { useTestDatabase } from '../support/postgres.ts';
import { eventually } from '../support/service.ts';
import { seedMessages } from './seed.ts';

const settings: RunSettings = {
  instanceId: 'pod-test',
  messageLeaseSeconds: 10,
  concurrency: 1,
  maxAttempts: 3,
  timeoutMs: 5_000,
  backoff: { baseMs: 10, maxMs: 20 },
};

describe('lease guard (delivery/policies/lease-guard.ts)', () => {
  it('keeps a margin of half the timeout, at most a second', () => {
    expect(leaseMarginMs(5_000)).to.equal(1_000);
    expect(leaseMarginMs(1_000)).to.equal(500);
  });

  it('lets a message go while its lease leaves the timeout plus the margin, from the moment before the claim', () => {
    let now = 100;
    const policy = leaseGuard(() => now)({ settings } as RunScope);
    expect(policy.beforeClaim?.(7)).to.equal(7);
    // Lease 10 s, timeout 5 s, margin 1 s: a request may start up to 4 s after the claim began.
    now = 100 + 4_000;
    expect(policy.beforeSend?.({} as never)).to.equal(true);
    now = 100 + 4_001;
    expect(policy.beforeSend?.({} as never)).to.equal(false);
    // The next claim starts the count again.
    policy.beforeClaim?.(7);
    expect(policy.beforeSend?.({} as never)).to.equal(true);
  });
});

/**
 * A message that waited for a free slot until too little of its lease was
 * left is handed back untried instead of being sent (the helper's finding:
 * sent once here and once by the pod that took over its expired lease). Real
 * PostgreSQL; a webhook the test answers by hand; the guard's clock is the test's.
 */
describe('lease guard in the delivery loop', function () {
  this.timeout(30_000);
  const db = useTestDatabase();
  let pool: Pool;
  before(() => {
    pool = createPool({ connectionString: db().url, max: 4 });
  });
  after(() => pool.end());

  it('hands back a message whose wait for a slot used up its lease, and sends it after a new claim', async () => {
    const [first, second] = await seedMessages(pool, 2);
    const requests: string[] = [];
    let release: (() => void) | undefined;
    const client: DeliveryClient = {
      mode: 'webhook',
      async deliver(message: OutboundMessage): Promise<DeliveryResult> {
        requests.push(message.id);
        if (requests.length === 1) await new Promise<void>((resolve) => (release = resolve));
        return { outcome: 'sent', externalMessageId: `ext-${message.id}`, httpStatus: 202 };
      },
      close: async () => {},
    };
    let clock = 0;
    const run = deliverBatch({ runId: 'lease-guard', batchSize: 2, signal: new AbortController().signal }, settings, {
      pool,
      client,
      cache: disabledSentCache,
      metrics: createMetrics(),
      logger: silentLogger(),
      // One slot for the run's two pipelines: each claims one message, the second waits for the first's slot.
      policies: [lanes(new ConcurrencyGate({ ceiling: 1, adaptive: false })), leaseGuard(() => clock)],
    });
    await eventually(
      async () => release,
      (waiting) => waiting !== undefined,
    );
    const claimed = await pool.query("SELECT id FROM messages WHERE status = 'sending' ORDER BY created_at");
    expect(claimed.rows.map((row) => row.id)).to.deep.equal([first, second]);
    // The first request holds the slot past the point where the second could still start and end within its lease.
    clock += 4_500;
    release?.();
    const summary = await run;
    expect(summary).to.include({ sent: 2, handedBack: 1 });
    expect(requests).to.deep.equal([first, second]);
    const attempts = await pool.query(
      'SELECT message_id, count(*)::int AS n FROM message_attempts GROUP BY message_id ORDER BY message_id',
    );
    expect(Object.fromEntries(attempts.rows.map((row) => [row.message_id, row.n]))).to.deep.equal({
      [first as string]: 1,
      [second as string]: 1,
    });
  });
});
