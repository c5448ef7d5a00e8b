import { expect } from 'chai';
import { LiveConfig } from '../../src/config/live-config.ts';
import { insertMessages } from '../../src/db/sqlc/messages_sql.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { parseTraceparent } from '../../src/observability/trace-context.ts';
import { type Service, startService } from '../../src/service.ts';
import { type RunningSink, startSink } from '../../src/sink/server.ts';
import { useTestDatabase } from '../support/postgres.ts';
import { api, eventually } from '../support/service.ts';

/**
 * W3C trace context end to end, without an OTLP endpoint (no SDK, ids only):
 * the real service on a real PostgreSQL, delivering to the project's sink,
 * which records the `traceparent` header of every request it gets.
 */
describe('trace context: traceparent from intake to every webhook attempt', function () {
  // Condition waits only; the bound is for a machine busy with other work.
  this.timeout(180_000);
  const db = useTestDatabase();
  const logs: Array<Record<string, any>> = [];
  let sink: RunningSink;
  let service: Service;
  let url: string;

  before(async () => {
    sink = await startSink();
    const logger = createLogger({
      level: 'warn',
      instanceId: 'trace-test',
      format: 'json',
      destination: { write: (line: string) => void logs.push({ ...JSON.parse(line), raw: line }) },
    });
    const live = new LiveConfig({
      DATABASE_URL: db().url,
      PORT: '0',
      WEBHOOK_URL: `${sink.url}/webhook`,
      WEBHOOK_RETRY_BASE_MS: '20',
      WEBHOOK_RETRY_MAX_MS: '50',
      INSTANCE_ID: `trace-test-${process.pid}`,
    });
    service = await startService(live, logger);
    url = `http://127.0.0.1:${service.port}`;
    await api(url, 'PUT', '/jobs/stop', { name: 'message-sender' });
    await api(url, 'POST', '/jobs', {
      name: 'traced-sender',
      handler: 'send-messages',
      intervalSeconds: 1,
      batchSize: 10,
      active: true,
    });
  });
  after(async () => {
    await service?.stop();
    await sink?.close();
  });

  /** Posts one message to `to` (201 expected); resolves with its id. */
  async function post(to: string, headers: Record<string, string> = {}) {
    const answer = await api(url, 'POST', '/messages', { to, content: 'traced' }, headers);
    expect(answer.status, JSON.stringify(answer.body)).to.equal(201);
    return answer.body.id as string;
  }
  /** Every `traceparent` the sink received for message `id`, in order, parsed. */
  const attemptsOf = (id: string) =>
    sink
      .received()
      .items.filter((item) => item.idempotencyKey === id)
      .map((item) => parseTraceparent(item.traceparent ?? undefined));
  const storedTraceParent = async (id: string) =>
    (await db().pool.query('SELECT trace_parent FROM messages WHERE id = $1', [id])).rows[0].trace_parent as string;
  const sent = async (id: string) =>
    eventually(
      () => api(url, 'GET', `/messages/${id}`).then((answer) => answer.body),
      (message) => message.status === 'sent',
      { timeoutMs: 60_000 },
    );

  it('continues a posted traceparent on every attempt, a retry included: same trace id, a new span id each', async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const posted = `00-${traceId}-00f067aa0ba902b7-01`;
    sink.configure({ statusCode: 503 });
    const id = await post('+905550000001', { traceparent: posted });
    await eventually(
      async () => attemptsOf(id).length,
      (count) => count >= 1,
      { timeoutMs: 60_000 },
    );
    sink.configure({ statusCode: undefined });
    // Retries answered 503 before the switch count too: the message is sent after one retry or more.
    const message = await sent(id);
    const attempts = attemptsOf(id);
    expect(attempts.length).to.equal(message.attempts).and.to.be.at.least(2);
    for (const attempt of attempts) {
      expect(attempt, 'every request carries a valid traceparent').to.not.equal(undefined);
      expect(attempt!.traceId).to.equal(traceId);
      expect(attempt!.sampled).to.equal(true);
    }
    const spanIds = attempts.map((attempt) => attempt!.spanId);
    expect(new Set(spanIds).size, 'a new span id per attempt').to.equal(attempts.length);
    const stored = parseTraceparent(await storedTraceParent(id))!;
    expect(stored.traceId).to.equal(traceId);
    expect(stored.spanId, "the intake request's own span, a child of the posted one").to.not.equal('00f067aa0ba902b7');
    expect(spanIds).to.not.include(stored.spanId);

    const retried = logs.find((line) => line.msg === 'delivery failed; will retry' && line.messageId === id);
    expect(retried, 'the retry is logged').to.not.equal(undefined);
    expect(retried!.traceId).to.equal(traceId);
    expect(retried!.spanId).to.equal(spanIds[0]);
    expect(retried!.raw.match(/"traceId"/g), 'one traceId per line').to.have.length(1);
  });

  it('gives a message posted without a traceparent a trace id of its own, the same on all its attempts', async () => {
    sink.configure({ statusCode: 503 });
    const first = await post('+905550000002');
    const second = await post('+905550000003');
    await eventually(
      async () => [attemptsOf(first).length, attemptsOf(second).length],
      ([a, b]) => a! >= 1 && b! >= 1,
      { timeoutMs: 60_000 },
    );
    sink.configure({ statusCode: undefined });
    for (const id of [first, second]) await sent(id);
    const traceIdsOf = (id: string) => new Set(attemptsOf(id).map((attempt) => attempt!.traceId));
    expect(attemptsOf(first).length).to.be.at.least(2);
    expect([...traceIdsOf(first)]).to.have.length(1);
    expect([...traceIdsOf(second)]).to.have.length(1);
    expect([...traceIdsOf(first)][0]).to.not.equal([...traceIdsOf(second)][0]);
    expect(parseTraceparent(await storedTraceParent(first))!.traceId).to.equal([...traceIdsOf(first)][0]);
  });

  it('ignores an invalid traceparent (W3C): the message is accepted (201) and starts a new trace', async () => {
    const invalid = [
      '00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01', // uppercase hex
      '00-00000000000000000000000000000000-00f067aa0ba902b7-01', // all-zero trace id
      '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01', // all-zero span id
      'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', // version ff
      '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra', // version 00 with more
      '00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01', // trace id one digit short
      'not a traceparent',
    ];
    const ids: string[] = [];
    for (const [index, header] of invalid.entries()) {
      const id = await post(`+90555000010${index}`, { traceparent: header });
      ids.push(id);
      const stored = parseTraceparent(await storedTraceParent(id));
      expect(stored, header).to.not.equal(undefined);
      expect(stored!.traceId, header).to.not.equal('4bf92f3577b34da6a3ce929d0e0e4736');
    }
    // Delivered before the next test makes the sink fail: messages left pending then would fail with it, open
    // the circuit breaker, and be its probes (the oldest due message goes first), so the next test's own message
    // would wait behind them until the sink answers again, which that test does only after its message was tried.
    for (const id of ids) await sent(id);
  });

  it('gives a message stored without trace context (before the column existed) its id as trace id, on every attempt', async () => {
    sink.configure({ statusCode: 503 });
    const [row] = await insertMessages(db().pool, {
      recipients: ['+905550000300'],
      contents: ['stored before tracing'],
      sendAts: [''],
      traceParent: null,
    });
    const id = row!.id;
    await eventually(
      async () => attemptsOf(id).length,
      (count) => count >= 1,
      { timeoutMs: 60_000 },
    );
    sink.configure({ statusCode: undefined });
    await sent(id);
    const traceIds = attemptsOf(id).map((attempt) => attempt!.traceId);
    expect(traceIds.length).to.be.at.least(2);
    expect(new Set(traceIds)).to.deep.equal(new Set([id.replaceAll('-', '')]));
  });

  it('continues a posted traceparent for every message of a batch', async () => {
    const traceId = '0af7651916cd43dd8448eb211c80319c';
    const answer = await api(
      url,
      'POST',
      '/messages/batch',
      { messages: [1, 2, 3].map((n) => ({ to: `+90555000020${n}`, content: `batch ${n}` })) },
      { traceparent: `00-${traceId}-b7ad6b7169203331-01` },
    );
    expect(answer.status).to.equal(201);
    const ids = (answer.body.items as Array<{ id: string }>).map((item) => item.id);
    for (const id of ids) await sent(id);
    for (const id of ids) {
      expect(parseTraceparent(await storedTraceParent(id))!.traceId).to.equal(traceId);
      expect(attemptsOf(id).map((attempt) => attempt!.traceId)).to.deep.equal([traceId]);
    }
  });
});
