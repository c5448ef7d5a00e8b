import { expect } from 'chai';
import { createPool, type Pool } from '../../src/db/pool.ts';
import { deliverBatch, PIPELINES_PER_RUN } from '../../src/delivery/loop.ts';
import { ConcurrencyGate, lanes } from '../../src/delivery/policies/lanes.ts';
import { disabledSentCache } from '../../src/delivery/sent-cache.ts';
import type { DeliveryClient, DeliveryResult, OutboundMessage } from '../../src/delivery/webhook.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { useTestDatabase } from '../support/postgres.ts';
import { eventually } from '../support/service.ts';
import { seedMessages } from './seed.ts';

/**
 * A run works its batch in two chunk pipelines: while one pipeline's chunk
 * is being sent, the other has already claimed the next chunk, so the
 * webhook is not left idle while a chunk is claimed or settled. Real
 * PostgreSQL; a webhook client the test answers by hand.
 */
describe('delivery pipelines of one run', function () {
  this.timeout(60_000);
  const db = useTestDatabase();
  let pool: Pool;

  before(() => {
    pool = createPool({ connectionString: db().url, max: 4 });
  });
  after(() => pool.end());
  beforeEach(() => pool.query('DELETE FROM messages'));

  const seed = (count: number) => seedMessages(pool, count);

  /** A webhook client whose requests wait until the test answers them (`answerAll`), recording the order they came in. */
  function heldClient() {
    const order: string[] = [];
    let waiting: Array<() => void> = [];
    let hold = true;
    const client: DeliveryClient = {
      mode: 'webhook',
      async deliver(message: OutboundMessage): Promise<DeliveryResult> {
        order.push(message.id);
        if (hold) await new Promise<void>((resolve) => waiting.push(resolve));
        return { outcome: 'sent', externalMessageId: `ext-${message.id}`, httpStatus: 202 };
      },
      close: async () => {},
    };
    return {
      client,
      order,
      inFlight: () => waiting.length,
      answerAll() {
        hold = false;
        for (const resolve of waiting) resolve();
        waiting = [];
      },
    };
  }

  const run = (client: DeliveryClient, batchSize: number, concurrency: number) =>
    deliverBatch(
      { runId: 'pipelines', batchSize, signal: new AbortController().signal },
      {
        instanceId: 'pod-test',
        messageLeaseSeconds: 60,
        concurrency,
        maxAttempts: 3,
        timeoutMs: 5_000,
        backoff: { baseMs: 10, maxMs: 20 },
      },
      {
        pool,
        client,
        cache: disabledSentCache,
        metrics: createMetrics(),
        logger: silentLogger(),
        policies: [lanes(new ConcurrencyGate({ ceiling: concurrency, adaptive: false }))],
      },
    );

  const sending = async () =>
    Number((await pool.query("SELECT count(*) AS n FROM messages WHERE status = 'sending'")).rows[0].n);

  it('claims the next chunk while the first is still being sent, holding no more than one chunk per pipeline', async () => {
    expect(PIPELINES_PER_RUN).to.equal(2);
    await seed(100);
    const webhook = heldClient();
    const done = run(webhook.client, 100, 5);
    // Concurrency 5: the run may hold 4 × 5 messages, 10 a pipeline; 5 are sent at once.
    await eventually(sending, (count) => count === 20);
    await eventually(
      async () => webhook.inFlight(),
      (count) => count === 5,
    );
    expect(await sending(), 'both chunks claimed, no more').to.equal(20);
    webhook.answerAll();
    const summary = await done;
    expect(summary).to.include({ claimed: 100, sent: 100, handedBack: 0 });
  });

  it('sends in claim order across the pipelines and claims no more than the batch', async () => {
    const ids = await seed(30);
    const webhook = heldClient();
    webhook.answerAll();
    const summary = await run(webhook.client, 25, 1);
    expect(summary).to.include({ claimed: 25, sent: 25 });
    // Concurrency 1: chunks of 2 (4 × 1 a run, 2 a pipeline), each sent whole before the next claim's, each in
    // claim order: the batch's own order, though its rows were created within the same millisecond.
    expect(webhook.order).to.deep.equal(ids.slice(0, 25));
    const pending = await pool.query("SELECT id FROM messages WHERE status = 'pending' ORDER BY created_at");
    expect(pending.rows.map((row) => row.id)).to.deep.equal(ids.slice(25));
  });
});
