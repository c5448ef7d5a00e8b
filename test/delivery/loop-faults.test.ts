import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { createPool, type Pool } from '../../src/db/pool.ts';
import { type DeliveryRequest, deliverBatch } from '../../src/delivery/loop.ts';
import { CircuitBreaker, circuitBreaker } from '../../src/delivery/policies/circuit-breaker.ts';
import { ConcurrencyGate, lanes } from '../../src/delivery/policies/lanes.ts';
import { shutdown } from '../../src/delivery/policies/shutdown.ts';
import type { RunSettings } from '../../src/delivery/run-settings.ts';
import { disabledSentCache, type SentCache, type SentEntry } from '../../src/delivery/sent-cache.ts';
import { createWebhookClient, type DeliveryClient } from '../../src/delivery/webhook.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { type RunningSink, startSink } from '../../src/sink/server.ts';
import { adminQuery, useTestDatabase } from '../support/postgres.ts';
import { eventually } from '../support/service.ts';
import { seedMessages } from './seed.ts';

/**
 * The delivery loop when something around it breaks, with a real PostgreSQL
 * and real HTTP: the webhook down (circuit breaker), the database gone while
 * outcomes are written, the shutdown deadline in the middle of a request, and
 * a webhook whose clock is not ours.
 */
describe('delivery loop under faults', function () {
  this.timeout(60_000);
  const db = useTestDatabase();
  let pool: Pool;
  let sink: RunningSink;
  const settings = (overrides: Partial<RunSettings> = {}): RunSettings => ({
    instanceId: 'pod-test',
    messageLeaseSeconds: 60,
    concurrency: 5,
    maxAttempts: 2,
    timeoutMs: 5_000,
    backoff: { baseMs: 10, maxMs: 20 },
    ...overrides,
  });
  const seed = (count: number) => seedMessages(pool, count);
  /** One run of the loop with the policies of a real run (the shared rate limit aside), the breaker when given. */
  const deliver = (
    request: Pick<DeliveryRequest, 'runId' | 'batchSize'> & Partial<DeliveryRequest>,
    parts: { client: DeliveryClient; cache?: SentCache; breaker?: CircuitBreaker; settings?: RunSettings },
  ) =>
    deliverBatch({ signal: new AbortController().signal, ...request }, parts.settings ?? settings(), {
      pool,
      client: parts.client,
      cache: parts.cache ?? disabledSentCache,
      metrics: createMetrics(),
      logger: silentLogger(),
      policies: [
        lanes(new ConcurrencyGate({ ceiling: 5, adaptive: false })),
        shutdown,
        ...(parts.breaker ? [circuitBreaker(parts.breaker)] : []),
      ],
    });
  const rows = async () =>
    (await pool.query('SELECT id, status, attempts, locked_by, sent_at FROM messages ORDER BY created_at')).rows;
  /** The delivery history of one message, oldest first. */
  const history = async (id: string) =>
    (
      await pool.query(
        'SELECT attempt, outcome, http_status, error FROM message_attempts WHERE message_id = $1 ORDER BY attempt',
        [id],
      )
    ).rows;

  before(() => {
    pool = createPool({ connectionString: db().url, max: 4 });
  });
  after(() => pool.end());
  beforeEach(async () => {
    await pool.query('DELETE FROM messages');
    sink = await startSink();
  });
  afterEach(() => sink.close());

  it('webhook down: the breaker opens, probes one message at a time, untried messages keep their attempts, nothing fails', async () => {
    const ids = await seed(30);
    sink.configure({ statusCode: 503 });
    const states: string[] = [];
    const breaker = new CircuitBreaker({
      threshold: 3,
      firstProbeDelayMs: 50,
      maxProbeDelayMs: 200,
      onChange: (state) => states.push(state),
    });
    const delivery = createWebhookClient({ url: sink.url, timeoutMs: 2_000 });
    const done = deliver({ runId: 'run-1', batchSize: 30 }, { client: delivery, breaker });
    // With maxAttempts 2, counting every probe would have failed the probed messages long ago.
    await eventually(
      async () => sink.received().total,
      (total) => total >= 12,
      { timeoutMs: 20_000, intervalMs: 20 },
    );
    expect(breaker.state).to.be.oneOf(['open', 'half-open']);
    const during = await rows();
    expect(during.filter((row) => row.status === 'failed')).to.deep.equal([]);
    expect(
      during.filter((row) => row.attempts === 0).length,
      'most messages were never tried and kept their attempt count',
    ).to.be.greaterThan(20);
    sink.configure({ statusCode: undefined });
    const summary = await done;
    expect(summary.failed).to.equal(0);
    expect(summary.handedBack).to.be.greaterThan(0);
    // The messages tried before the breaker opened used up part of the batch; the next run sends them.
    await new Promise((resolve) => setTimeout(resolve, 50));
    const next = await deliver({ runId: 'run-2', batchSize: 30 }, { client: delivery, breaker });
    await delivery.close();
    expect(next.failed).to.equal(0);
    const after = await rows();
    expect(after.every((row) => row.status === 'sent')).to.equal(true);
    expect(after.map((row) => row.id).sort()).to.deep.equal([...ids].sort());
    expect(sink.received().duplicates).to.deep.equal([]);
    expect(breaker.state).to.equal('closed');
    expect(states).to.include.members(['open', 'half-open', 'closed']);
    // Every request the webhook saw is in the history: failed probes as retries that did not count.
    const recorded = (await Promise.all(ids.map(history))).flat();
    expect(recorded).to.have.length(sink.received().total);
    expect(recorded.filter((row) => row.outcome === 'delivered')).to.have.length(30);
    const probes = recorded.filter((row) => row.error === 'HTTP 503 (handed back, not counted)');
    expect(probes.length, 'failed probes').to.be.greaterThan(0);
    for (const probe of probes) expect(probe).to.include({ outcome: 'retry', http_status: 503 });
  });

  it('database gone while the outcomes are written: they are kept and written when it is back, nothing is sent twice', async () => {
    const ids = await seed(5);
    sink.configure({ latencyMs: 800 });
    const delivery = createWebhookClient({ url: sink.url, timeoutMs: 5_000 });
    const done = deliver({ runId: 'run-1', batchSize: 5 }, { client: delivery });
    await eventually(
      async () => sink.received().total,
      (total) => total === 5,
      { intervalMs: 20 },
    );
    // Cut the database off while the webhook is still answering: no new connection, every one dropped.
    await adminQuery(`ALTER DATABASE ${db().name} ALLOW_CONNECTIONS false`);
    await adminQuery(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${db().name}'`);
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    await adminQuery(`ALTER DATABASE ${db().name} ALLOW_CONNECTIONS true`);
    const summary = await done;
    await delivery.close();
    expect(summary.sent).to.equal(5);
    const after = await rows();
    expect(after.map((row) => row.status)).to.deep.equal(['sent', 'sent', 'sent', 'sent', 'sent']);
    expect(after.map((row) => row.id).sort()).to.deep.equal([...ids].sort());
    expect(sink.received().total, 'each message reached the webhook once').to.equal(5);
  });

  it('shutdown deadline mid-request: the request is aborted, the message handed back with the same id, attempt not counted', async () => {
    const ids = await seed(3);
    sink.configure({ latencyMs: 8_000 });
    const delivery = createWebhookClient({ url: sink.url, timeoutMs: 10_000 });
    const stopping = new AbortController();
    const deadline = new AbortController();
    const done = deliver(
      { runId: 'run-1', batchSize: 3, signal: stopping.signal, deadline: deadline.signal },
      { client: delivery, settings: settings({ messageLeaseSeconds: 30 }) },
    );
    await eventually(
      async () => sink.received().total,
      (total) => total === 3,
      { intervalMs: 20 },
    );
    // Measured from the deadline, which comes just after the requests reached the 8 s webhook
    // (not from the start, which a loaded machine can push back by seconds).
    const abortedAt = Date.now();
    stopping.abort();
    deadline.abort();
    const summary = await done;
    expect(Date.now() - abortedAt, 'did not wait for the 8 s webhook').to.be.below(4_000);
    await delivery.close();
    expect(summary.handedBack).to.equal(3);
    const after = await rows();
    expect(after.map((row) => [row.status, row.attempts, row.locked_by])).to.deep.equal([
      ['pending', 0, null],
      ['pending', 0, null],
      ['pending', 0, null],
    ]);
    expect(after.map((row) => row.id).sort()).to.deep.equal([...ids].sort());
    for (const id of ids) {
      expect(await history(id)).to.deep.equal([
        { attempt: 1, outcome: 'aborted', http_status: null, error: 'aborted: shutting down' },
      ]);
    }
  });

  it('caches the database sent_at, not the app clock', async () => {
    await seed(2);
    const cached: SentEntry[] = [];
    const cache: SentCache = { ...disabledSentCache, remember: async (entries) => void cached.push(...entries) };
    const delivery = createWebhookClient({ url: sink.url, timeoutMs: 5_000 });
    await deliver({ runId: 'run-1', batchSize: 2 }, { client: delivery, cache });
    await delivery.close();
    const stored = await pool.query('SELECT id, sent_at::text AS exact, sent_at FROM messages');
    expect(cached).to.have.length(2);
    for (const entry of cached) {
      const row = stored.rows.find((candidate) => candidate.id === entry.id);
      expect(entry.sentAt).to.equal((row.sent_at as Date).toISOString());
    }
  });

  it('stores what PostgreSQL text cannot hold (NUL, a lone surrogate) as U+FFFD instead of failing the outcome write', async () => {
    // A webhook answering 2xx with such a messageId, and a 503 whose body the error and the excerpt carry.
    const server = createServer((request, response) => {
      request.resume();
      request.on('end', () => {
        if (request.headers['idempotency-key'] === first) {
          response.writeHead(200, { 'content-type': 'application/json' });
          response.end('{"messageId":"a\\u0000b\\ud800c"}');
        } else {
          response.writeHead(503);
          response.end(Buffer.from([0x62, 0x75, 0x73, 0x79, 0x00, 0x21]));
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const [first] = await seed(2);
    try {
      const delivery = createWebhookClient({
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
        timeoutMs: 5_000,
      });
      await deliver({ runId: 'run-1', batchSize: 2 }, { client: delivery });
      await delivery.close();
      const rows = await pool.query(
        `SELECT m.id, m.status, m.external_message_id, m.last_error, a.response_excerpt
         FROM messages AS m JOIN message_attempts AS a ON a.message_id = m.id ORDER BY m.id = $1 DESC`,
        [first],
      );
      expect(
        rows.rows.map((row) => [row.status, row.external_message_id, row.last_error, row.response_excerpt]),
      ).to.deep.equal([
        ['sent', 'a\uFFFDb\uFFFDc', null, '{"messageId":"a\\u0000b\\ud800c"}'],
        ['pending', null, 'HTTP 503: busy !', 'busy\uFFFD!'],
      ]);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it('reads an HTTP-date Retry-After against the response Date header, not our clock', async () => {
    // The webhook's clock is an hour behind ours: measured against ours the date would be long past.
    const theirNow = Date.now() - 3_600_000;
    const server = createServer((_request, response) => {
      response.writeHead(503, {
        date: new Date(theirNow).toUTCString(),
        'retry-after': new Date(theirNow + 60_000).toUTCString(),
      });
      response.end('busy');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const delivery = createWebhookClient({
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
        timeoutMs: 2_000,
      });
      const result = await delivery.deliver({ id: 'id-1', to: '+905551111111', content: 'x' });
      await delivery.close();
      expect(result.outcome).to.equal('transient');
      expect(result.outcome === 'transient' && result.retryAfterMs).to.be.within(59_000, 61_000);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});
