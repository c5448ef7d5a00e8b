import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { operationsOn, responseProblems } from '../support/openapi-contract.ts';
import { useTestDatabase } from '../support/postgres.ts';
import { rawRequest } from '../support/raw-http.ts';
import { api, eventually, startTestService, type TestService } from '../support/service.ts';

/**
 * The delivery history end to end: the real service, a real webhook whose
 * behaviour each message's content chooses, the attempts read over
 * GET /messages/{id}/attempts and in message_attempts itself.
 */

const authValue = 'auth-value-never-stored-4711';
const signingSecret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';

interface Attempt {
  attempt: number;
  startedAt: string;
  durationMs: number;
  outcome: string;
  httpStatus: number | null;
  error: string | null;
  responseExcerpt: string | null;
}

/** A webhook that does what the message's content says: fail-twice, refuse, hang, big, echo-secrets. */
async function startChoosyWebhook() {
  const tries = new Map<string, number>();
  const open = new Set<ServerResponse>();
  const server = createServer(async (request: IncomingMessage, response: ServerResponse) => {
    let body = '';
    for await (const chunk of request) body += chunk;
    const { content } = JSON.parse(body) as { content: string };
    const id = String(request.headers['idempotency-key']);
    const attempt = (tries.get(id) ?? 0) + 1;
    tries.set(id, attempt);
    const reply = (status: number, text: string) => {
      response.writeHead(status, { 'content-type': 'application/json' });
      response.end(text);
    };
    switch (content) {
      case 'fail-twice':
        if (attempt <= 2) reply(503, `{"error":"busy, try ${attempt}"}`);
        else reply(202, `{"message":"Accepted","messageId":"ext-${id}"}`);
        return;
      case 'refuse':
        reply(503, 'still down');
        return;
      case 'hang':
        open.add(response); // never answered; the client's timeout ends it
        return;
      case 'big':
        reply(500, 'é'.repeat(5_000));
        return;
      case 'echo-secrets':
        reply(
          400,
          `auth=${request.headers['x-ins-auth-key']} secret=${signingSecret} sig=${request.headers['webhook-signature']}`,
        );
        return;
      default:
        reply(202, `{"messageId":"ext-${id}"}`);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/webhook`,
    close: async () => {
      for (const response of open) response.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

function historyFixture(settings: (webhookUrl: string) => Record<string, string>) {
  const db = useTestDatabase();
  const state = {} as { service: TestService; webhook: Awaited<ReturnType<typeof startChoosyWebhook>> };
  before(async () => {
    state.webhook = await startChoosyWebhook();
    state.service = await startTestService(db().url, {
      WEBHOOK_RETRY_BASE_MS: '20',
      WEBHOOK_RETRY_MAX_MS: '50',
      WEBHOOK_BREAKER_THRESHOLD: '1000',
      ...settings(state.webhook.url),
    });
    await api(state.service.url, 'PUT', '/jobs/stop', { name: 'message-sender' });
    await api(state.service.url, 'POST', '/jobs', {
      name: 'sender',
      handler: 'send-messages',
      intervalSeconds: 1,
      batchSize: 20,
      active: true,
    });
  });
  after(async () => {
    await state.service?.stop();
    await state.webhook?.close();
  });
  const post = async (content: string, extra: Record<string, string> = {}) =>
    (await api(state.service.url, 'POST', '/messages', { to: '+905551111111', content, ...extra })).body.id as string;
  const message = async (id: string) => (await api(state.service.url, 'GET', `/messages/${id}`)).body;
  const settled = (id: string, status: string) =>
    eventually(
      () => message(id),
      (m) => m.status === status,
      { timeoutMs: 30_000 },
    );
  /** GET `path`, its answer checked against openapi.yaml (status documented, body of the documented shape). */
  const get = async (path: string) => {
    const response = await rawRequest(state.service.url, 'GET', path);
    expect(responseProblems(operationsOn('/messages/{id}/attempts')[0]!, response), path).to.deep.equal([]);
    return { status: response.status, body: JSON.parse(response.text) };
  };
  const attempts = (id: string, query = '') => get(`/messages/${id}/attempts${query}`);
  const items = async (id: string) => (await attempts(id, '?limit=100')).body.items as Attempt[];
  return { db, state, post, message, settled, get, attempts, items };
}

describe('delivery history: GET /messages/{id}/attempts', function () {
  this.timeout(60_000);
  const f = historyFixture((url) => ({
    WEBHOOK_URL: url,
    WEBHOOK_MAX_ATTEMPTS: '3',
    // Generous, so a loaded machine never turns an answer into a timeout; the timeout case has its own service.
    WEBHOOK_TIMEOUT_MS: '20000',
    WEBHOOK_AUTH_HEADER: 'x-ins-auth-key',
    WEBHOOK_AUTH_VALUE: authValue,
    WEBHOOK_SIGNING_SECRET: signingSecret,
  }));

  it('a webhook that fails twice then accepts: retry, retry, delivered, with statuses and excerpts, oldest first', async () => {
    const id = await f.post('fail-twice');
    await f.settled(id, 'sent');
    const history = await f.items(id);
    expect(history.map((a) => [a.attempt, a.outcome, a.httpStatus, a.error, a.responseExcerpt])).to.deep.equal([
      [1, 'retry', 503, 'HTTP 503', '{"error":"busy, try 1"}'],
      [2, 'retry', 503, 'HTTP 503', '{"error":"busy, try 2"}'],
      [3, 'delivered', 202, null, `{"message":"Accepted","messageId":"ext-${id}"}`],
    ]);
    for (const attempt of history) {
      expect(Number.isInteger(attempt.durationMs) && attempt.durationMs >= 0).to.equal(true);
      expect(new Date(attempt.startedAt).toISOString()).to.equal(attempt.startedAt);
    }
    const starts = history.map((a) => Date.parse(a.startedAt));
    expect(starts).to.deep.equal([...starts].sort((a, b) => a - b));
  });

  it('a webhook that refuses for good: failed at WEBHOOK_MAX_ATTEMPTS; a retry continues the numbering', async () => {
    const id = await f.post('refuse');
    await f.settled(id, 'failed');
    expect((await f.items(id)).map((a) => [a.attempt, a.outcome, a.httpStatus, a.responseExcerpt])).to.deep.equal([
      [1, 'retry', 503, 'still down'],
      [2, 'retry', 503, 'still down'],
      [3, 'failed', 503, 'still down'],
    ]);
    expect((await api(f.state.service.url, 'POST', `/messages/${id}/retry`)).status).to.equal(200);
    await eventually(
      () => f.items(id),
      (history) => history.length === 6,
      { timeoutMs: 30_000 },
    );
    expect((await f.items(id)).map((a) => [a.attempt, a.outcome])).to.deep.equal([
      [1, 'retry'],
      [2, 'retry'],
      [3, 'failed'],
      [4, 'retry'],
      [5, 'retry'],
      [6, 'failed'],
    ]);
  });

  it('the excerpt is the first 1,024 characters of the body', async () => {
    const id = await f.post('big');
    await f.settled(id, 'failed');
    const [first] = await f.items(id);
    expect(first!.responseExcerpt).to.equal('é'.repeat(1_024));
  });

  it('never stores the auth value, the signing secret or the signature: excerpt, error and lastError are redacted', async () => {
    const id = await f.post('echo-secrets');
    const failed = await f.settled(id, 'failed');
    const [only, ...rest] = await f.items(id);
    expect(rest).to.deep.equal([]);
    expect(only).to.include({
      outcome: 'failed',
      httpStatus: 400,
      error: 'HTTP 400',
      responseExcerpt: 'auth=[redacted] secret=[redacted] sig=[redacted]',
    });
    expect(failed.lastError).to.equal('HTTP 400: auth=[redacted] secret=[redacted] sig=[redacted]');
    const stored = await f.db().pool.query('SELECT row_to_json(a)::text AS row FROM message_attempts a');
    const everything = stored.rows.map((row) => row.row).join('\n');
    for (const secret of [authValue, signingSecret, signingSecret.slice(6)]) {
      expect(everything).to.not.include(secret);
    }
  });

  it('pages oldest first with a keyset cursor', async () => {
    const id = await f.post('refuse');
    await f.settled(id, 'failed');
    const first = await f.attempts(id, '?limit=2');
    expect(first.status).to.equal(200);
    expect(first.body.items.map((a: Attempt) => a.attempt)).to.deep.equal([1, 2]);
    expect(first.body.nextCursor).to.be.a('string');
    const second = await f.attempts(id, `?limit=2&cursor=${first.body.nextCursor}`);
    expect(second.body.items.map((a: Attempt) => a.attempt)).to.deep.equal([3]);
    expect(second.body.nextCursor).to.equal(null);
    const whole = await f.attempts(id);
    expect(whole.body.items).to.have.length(3);
    expect(whole.body.nextCursor, 'default limit 20').to.equal(null);

    // Another message's cursor is not this one's.
    const other = await f.post('fail-twice');
    await f.settled(other, 'sent');
    const foreign = await f.attempts(other, `?limit=2&cursor=${first.body.nextCursor}`);
    expect([foreign.status, foreign.body.error.code]).to.deep.equal([400, 'invalid_cursor']);
  });

  it('a message not tried yet has no attempts; an unknown one is 404; a bad id, limit or cursor is 400', async () => {
    const later = await f.post('never', { sendAt: '2099-01-01T00:00:00Z' });
    expect((await f.attempts(later)).body).to.deep.equal({ items: [], nextCursor: null });
    const unknown = await f.attempts('0f8fad5b-d9cb-469f-a165-70867728950e');
    expect([unknown.status, unknown.body.error.code]).to.deep.equal([404, 'message_not_found']);
    for (const [path, why] of [
      ['/messages/not-a-uuid/attempts', 'id'],
      [`/messages/${later}/attempts?limit=0`, 'limit 0'],
      [`/messages/${later}/attempts?limit=101`, 'limit 101'],
      [`/messages/${later}/attempts?limit=x`, 'limit x'],
      [`/messages/${later}/attempts?cursor=!!`, 'cursor'],
      [`/messages/${later}/attempts?cursor=${Buffer.from('[1,2]').toString('base64url')}`, 'cursor shape'],
    ] as const) {
      expect((await f.get(path)).status, why).to.equal(400);
    }
  });

  it('a message removed (retention) takes its attempts with it', async () => {
    const id = await f.post('fail-twice');
    await f.settled(id, 'sent');
    const count = async () =>
      Number(
        (await f.db().pool.query('SELECT count(*) FROM message_attempts WHERE message_id = $1', [id])).rows[0].count,
      );
    const others = async () =>
      Number(
        (await f.db().pool.query('SELECT count(*) FROM message_attempts WHERE message_id <> $1', [id])).rows[0].count,
      );
    expect(await count()).to.equal(3);
    const othersBefore = await others();
    expect(othersBefore).to.be.greaterThan(0);
    await f.db().pool.query('DELETE FROM messages WHERE id = $1', [id]);
    expect(await count()).to.equal(0);
    expect(await others(), 'the attempts of messages still there').to.equal(othersBefore);
    expect((await f.attempts(id)).status).to.equal(404);
  });

  it('TRUNCATE messages empties the history too (last here: it removes every message of the fixture)', async () => {
    const id = await f.post('fail-twice');
    await f.settled(id, 'sent');
    await f.db().pool.query('TRUNCATE messages');
    expect(Number((await f.db().pool.query('SELECT count(*) FROM message_attempts')).rows[0].count)).to.equal(0);
  });
});

describe('delivery history: a webhook nobody listens on', function () {
  this.timeout(60_000);
  const f = historyFixture(() => ({ WEBHOOK_URL: 'http://127.0.0.1:9/webhook', WEBHOOK_MAX_ATTEMPTS: '1' }));

  it('records "connection refused" with no status', async () => {
    const id = await f.post('anything');
    await f.settled(id, 'failed');
    expect(
      (await f.items(id)).map((a) => [a.attempt, a.outcome, a.httpStatus, a.error, a.responseExcerpt]),
    ).to.deep.equal([[1, 'failed', null, 'connection refused', null]]);
  });
});

describe('delivery history: a webhook that never answers', function () {
  this.timeout(60_000);
  const f = historyFixture((url) => ({ WEBHOOK_URL: url, WEBHOOK_MAX_ATTEMPTS: '3', WEBHOOK_TIMEOUT_MS: '300' }));

  it('a timeout: error "timeout", no status, no excerpt', async () => {
    const id = await f.post('hang');
    await f.settled(id, 'failed');
    const history = await f.items(id);
    expect(history.map((a) => [a.outcome, a.httpStatus, a.error, a.responseExcerpt])).to.deep.equal([
      ['retry', null, 'timeout', null],
      ['retry', null, 'timeout', null],
      ['failed', null, 'timeout', null],
    ]);
    for (const attempt of history) expect(attempt.durationMs).to.be.at.least(250);
  });
});
