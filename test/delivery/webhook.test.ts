import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { backoffDelayMs, decideOutcome, MAX_RETRY_AFTER_MS } from '../../src/delivery/backoff.ts';
import { createWebhookSigner } from '../../src/delivery/signing.ts';
import {
  createDryRunClient,
  createWebhookClient,
  type DeliveryClient,
  type DeliveryResult,
  excerptOf,
  parseRetryAfter,
} from '../../src/delivery/webhook.ts';
import { type RunningSink, startSink } from '../../src/sink/server.ts';

const secret = 's3cr3t-auth-value';

function outboundMessage() {
  return { id: randomUUID(), to: '+905551111111', content: 'Merhaba 👋' };
}

interface CapturedRequest {
  method: string | undefined;
  url: string | undefined;
  headers: IncomingHttpHeaders;
  body: string;
}

/** A throwaway node:http server for replies the sink does not make. */
async function startOddServer(reply: (request: IncomingMessage, response: ServerResponse) => void) {
  const captured: CapturedRequest[] = [];
  const sockets = new Set<unknown>();
  const server = createServer(async (request, response) => {
    let body = '';
    for await (const chunk of request) body += chunk;
    captured.push({ method: request.method, url: request.url, headers: request.headers, body });
    reply(request, response);
  });
  server.on('connection', (socket) => sockets.add(socket));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    captured,
    connections: () => sockets.size,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function replyWith(status: number, body: string, headers: Record<string, string> = {}) {
  return (_request: IncomingMessage, response: ServerResponse) => {
    response.writeHead(status, headers);
    response.end(body);
  };
}

/** Delivers one message to a server answering `status` + `body`, and returns the result. */
async function deliverTo(
  status: number,
  body: string,
  headers: Record<string, string> = {},
  maxResponseBytes?: number,
) {
  const server = await startOddServer(replyWith(status, body, headers));
  const client = createWebhookClient({ url: server.url, timeoutMs: 2000, maxResponseBytes });
  try {
    return await client.deliver(outboundMessage());
  } finally {
    await client.close();
    await server.close();
  }
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A result without what the delivery history keeps of it (the short error, the response excerpt): how it was classified. */
function classification(result: DeliveryResult): DeliveryResult {
  const { attemptError: _error, responseExcerpt: _excerpt, ...rest } = result;
  return rest as DeliveryResult;
}

describe('webhook client', () => {
  describe('against the sink', () => {
    let sink: RunningSink;
    let client: DeliveryClient;

    before(async () => {
      sink = await startSink({ authHeader: 'x-ins-auth-key', authValue: secret });
      client = createWebhookClient({
        url: `${sink.url}/webhook`,
        authHeader: 'x-ins-auth-key',
        authValue: secret,
        timeoutMs: 2000,
      });
    });
    after(async () => {
      await client.close();
      await sink.close();
    });
    beforeEach(() => {
      sink.clear();
      sink.configure({ failureRate: 0, statusCode: undefined, latencyMs: 0 });
    });

    it('is in webhook mode', () => {
      expect(client.mode).to.equal('webhook');
    });

    it('delivers {to, content} keyed by the message id and returns the messageId as sent', async () => {
      const message = outboundMessage();
      const result = await client.deliver(message);
      const [item] = sink.received().items;
      expect(item).to.include({ idempotencyKey: message.id, to: message.to, content: message.content, status: 202 });
      expect(classification(result)).to.deep.equal({
        outcome: 'sent',
        externalMessageId: item!.messageId,
        httpStatus: 202,
      });
    });

    it('gets the same messageId back when the same message is delivered again', async () => {
      const message = outboundMessage();
      const first = await client.deliver(message);
      const second = await client.deliver(message);
      expect(second).to.deep.equal(first);
      expect(sink.received().duplicates).to.deep.equal([message.id]);
    });

    it('treats a 503 from the sink as transient, naming the status', async () => {
      sink.configure({ failureRate: 1 });
      const result = await client.deliver(outboundMessage());
      expect(classification(result)).to.deep.equal({
        outcome: 'transient',
        httpStatus: 503,
        error: 'HTTP 503: {"message":"injected failure"}',
      });
    });

    it('treats a rejected auth header as permanent, without the auth value in the error', async () => {
      const wrongAuth = createWebhookClient({
        url: sink.url,
        authHeader: 'x-ins-auth-key',
        authValue: 'not-it',
        timeoutMs: 2000,
      });
      try {
        const result = await wrongAuth.deliver(outboundMessage());
        expect(result).to.include({ outcome: 'permanent', httpStatus: 401 });
        expect((result as { error: string }).error)
          .to.match(/^HTTP 401: /)
          .and.not.include('not-it');
      } finally {
        await wrongAuth.close();
      }
    });
  });

  describe('request', () => {
    it('POSTs JSON with Content-Type, Idempotency-Key and the auth header to the configured URL', async () => {
      const server = await startOddServer(replyWith(202, '{"message":"Accepted","messageId":"m-1"}'));
      const client = createWebhookClient({
        url: `${server.url}/hooks/sms?tenant=7`,
        authHeader: 'X-Ins-Auth-Key',
        authValue: secret,
        timeoutMs: 2000,
      });
      const message = outboundMessage();
      try {
        expect(classification(await client.deliver(message))).to.deep.equal({
          outcome: 'sent',
          externalMessageId: 'm-1',
          httpStatus: 202,
        });
        const [request] = server.captured;
        expect(request).to.include({ method: 'POST', url: '/hooks/sms?tenant=7' });
        expect(request!.headers).to.include({
          'content-type': 'application/json',
          'idempotency-key': message.id,
          'x-ins-auth-key': secret,
        });
        expect(JSON.parse(request!.body)).to.deep.equal({ to: message.to, content: message.content });
      } finally {
        await client.close();
        await server.close();
      }
    });

    it('sends no auth header when none is configured', async () => {
      const server = await startOddServer(replyWith(200, '{"messageId":"m-2"}'));
      const client = createWebhookClient({ url: server.url, timeoutMs: 2000 });
      try {
        await client.deliver(outboundMessage());
        expect(Object.keys(server.captured[0]!.headers)).to.not.include('x-ins-auth-key');
      } finally {
        await client.close();
        await server.close();
      }
    });

    it('keeps the connection alive between deliveries', async () => {
      const server = await startOddServer(replyWith(200, '{"messageId":"m-3"}'));
      const client = createWebhookClient({ url: server.url, timeoutMs: 2000 });
      try {
        for (let i = 0; i < 10; i++) await client.deliver(outboundMessage());
        expect(server.captured).to.have.length(10);
        // undici may open a second socket while the first one is being handed back after its first response
        expect(server.connections()).to.be.at.most(2);
      } finally {
        await client.close();
        await server.close();
      }
    });

    it('refuses half an auth configuration and non-HTTP URLs', () => {
      expect(() => createWebhookClient({ url: 'http://x', authHeader: 'x-ins-auth-key', timeoutMs: 1 })).to.throw(
        /set together/,
      );
      expect(() => createWebhookClient({ url: 'http://x', authValue: secret, timeoutMs: 1 })).to.throw(/set together/);
      expect(() => createWebhookClient({ url: 'ftp://x', timeoutMs: 1 })).to.throw(/http or https/);
    });
  });

  describe('classification', () => {
    const cases: Array<[number, string, Partial<DeliveryResult>]> = [
      [200, '{"messageId":"abc"}', { outcome: 'sent', externalMessageId: 'abc', httpStatus: 200 }],
      [
        201,
        '{"message":"Accepted","messageId":"abc","extra":[1]}',
        { outcome: 'sent', externalMessageId: 'abc', httpStatus: 201 },
      ],
      [204, '', { outcome: 'permanent', httpStatus: 204, error: 'HTTP 204: response is not JSON' }],
      [200, 'OK', { outcome: 'permanent', httpStatus: 200, error: 'HTTP 200: response is not JSON: OK' }],
      [200, '{}', { outcome: 'permanent', httpStatus: 200, error: 'HTTP 200: response has no messageId: {}' }],
      [
        200,
        '{"messageId":""}',
        { outcome: 'permanent', httpStatus: 200, error: 'HTTP 200: response has no messageId: {"messageId":""}' },
      ],
      [
        200,
        '{"messageId":42}',
        { outcome: 'permanent', httpStatus: 200, error: 'HTTP 200: response has no messageId: {"messageId":42}' },
      ],
      [
        200,
        '["abc"]',
        { outcome: 'permanent', httpStatus: 200, error: 'HTTP 200: response has no messageId: ["abc"]' },
      ],
      [408, 'slow', { outcome: 'transient', httpStatus: 408, error: 'HTTP 408: slow' }],
      [429, '', { outcome: 'transient', httpStatus: 429, error: 'HTTP 429' }],
      [500, 'boom\n  at line 1', { outcome: 'transient', httpStatus: 500, error: 'HTTP 500: boom at line 1' }],
      [502, 'bad gateway', { outcome: 'transient', httpStatus: 502, error: 'HTTP 502: bad gateway' }],
      [
        400,
        '{"error":"invalid phone"}',
        { outcome: 'permanent', httpStatus: 400, error: 'HTTP 400: {"error":"invalid phone"}' },
      ],
      [404, 'no such hook', { outcome: 'permanent', httpStatus: 404, error: 'HTTP 404: no such hook' }],
      [422, '', { outcome: 'permanent', httpStatus: 422, error: 'HTTP 422' }],
      [301, '', { outcome: 'permanent', httpStatus: 301, error: 'HTTP 301' }],
    ];
    for (const [status, body, expected] of cases) {
      it(`${status} ${JSON.stringify(body)} -> ${expected.outcome}`, async () => {
        expect(classification(await deliverTo(status, body))).to.deep.equal(expected);
      });
    }

    it('reads a JSON answer that starts with a UTF-8 byte order mark, with or without Content-Length', async () => {
      const bom = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"messageId":"abc"}')]);
      for (const chunked of [false, true]) {
        const server = await startOddServer((_request, response) => {
          response.writeHead(200, chunked ? {} : { 'content-length': String(bom.length) });
          if (chunked) response.write(bom.subarray(0, 2));
          response.end(chunked ? bom.subarray(2) : bom);
        });
        const client = createWebhookClient({ url: server.url, timeoutMs: 2000 });
        try {
          expect(await client.deliver(outboundMessage()), chunked ? 'chunked' : 'content-length').to.deep.equal({
            outcome: 'sent',
            externalMessageId: 'abc',
            httpStatus: 200,
            responseExcerpt: '{"messageId":"abc"}',
          });
        } finally {
          await client.close();
          await server.close();
        }
      }
    });

    it('passes on Retry-After in seconds for 429 and 503', async () => {
      expect(classification(await deliverTo(429, 'slow down', { 'retry-after': '7' }))).to.deep.equal({
        outcome: 'transient',
        httpStatus: 429,
        error: 'HTTP 429: slow down',
        retryAfterMs: 7000,
      });
      expect(await deliverTo(503, '', { 'retry-after': '2' })).to.include({ retryAfterMs: 2000 });
    });

    it('passes on Retry-After as an HTTP-date', async () => {
      const inOneMinute = new Date(Date.now() + 60_000).toUTCString();
      const result = await deliverTo(429, '', { 'retry-after': inOneMinute });
      expect((result as { retryAfterMs: number }).retryAfterMs).to.be.within(55_000, 60_000);
    });

    it('cuts the body in an error to 200 characters', async () => {
      const result = (await deliverTo(503, 'x'.repeat(5000))) as { error: string };
      expect(result.error).to.equal(`HTTP 503: ${'x'.repeat(200)}…`);
    });

    it('never puts the auth value in an error, even when the server echoes it', async () => {
      const server = await startOddServer((request, response) => {
        response.writeHead(403);
        response.end(`forbidden for key ${request.headers['x-ins-auth-key']}`);
      });
      const client = createWebhookClient({
        url: server.url,
        authHeader: 'x-ins-auth-key',
        authValue: secret,
        timeoutMs: 2000,
      });
      try {
        const result = (await client.deliver(outboundMessage())) as { error: string };
        expect(result.error).to.equal('HTTP 403: forbidden for key [redacted]');
      } finally {
        await client.close();
        await server.close();
      }
    });
  });

  describe('response size cap', () => {
    it('treats a 2xx body over the cap as permanent "response too large"', async () => {
      const body = JSON.stringify({ messageId: 'abc', padding: 'x'.repeat(100 * 1024) });
      expect(classification(await deliverTo(200, body))).to.deep.equal({
        outcome: 'permanent',
        httpStatus: 200,
        error: 'HTTP 200: response too large (over 65536 bytes)',
      });
    });

    it('honours a configured cap', async () => {
      const body = JSON.stringify({ messageId: 'abc', padding: 'x'.repeat(2000) });
      expect(await deliverTo(200, body, {}, 1024)).to.include({
        outcome: 'permanent',
        error: 'HTTP 200: response too large (over 1024 bytes)',
      });
      expect(await deliverTo(200, body, {}, 4096)).to.include({ outcome: 'sent' });
    });

    it('keeps a large error body transient, with an excerpt of its start', async () => {
      const result = (await deliverTo(503, `busy ${'y'.repeat(200 * 1024)}`)) as { outcome: string; error: string };
      expect(result.outcome).to.equal('transient');
      expect(result.error).to.match(/^HTTP 503: busy y+…$/);
    });

    it('reads a body a little over the cap to its end, so the connection serves the next request', async () => {
      const server = await startOddServer(replyWith(503, 'e'.repeat(5000)));
      const client = createWebhookClient({ url: server.url, timeoutMs: 2000, maxResponseBytes: 1024 });
      try {
        for (let i = 0; i < 5; i++)
          expect(await client.deliver(outboundMessage())).to.include({ outcome: 'transient' });
        expect(server.captured).to.have.length(5);
        // undici may open a second socket while the first one is being handed back after its first response
        expect(server.connections()).to.be.at.most(2);
      } finally {
        await client.close();
        await server.close();
      }
    });

    it('answers with a cap that is not a whole number of bytes, or below zero', async () => {
      const body = JSON.stringify({ messageId: 'abc', padding: 'x'.repeat(5000) });
      for (const cap of [100.5, -1])
        expect(await deliverTo(200, body, {}, cap), String(cap)).to.include({
          outcome: 'permanent',
          error: `HTTP 200: response too large (over ${cap} bytes)`,
        });
    });

    it('stops reading an endless 2xx body at the cap instead of waiting for it', async () => {
      const server = await startOddServer((_request, response) => {
        response.writeHead(200, { 'content-type': 'application/json' });
        const chunk = Buffer.alloc(16 * 1024, 'z');
        const timer = setInterval(() => response.write(chunk), 5);
        response.on('close', () => clearInterval(timer));
      });
      const client = createWebhookClient({ url: server.url, timeoutMs: 5000 });
      const started = Date.now();
      try {
        const result = await client.deliver(outboundMessage());
        expect(result).to.include({ outcome: 'permanent', error: 'HTTP 200: response too large (over 65536 bytes)' });
        expect(Date.now() - started).to.be.below(2000);
      } finally {
        await client.close();
        await server.close();
      }
    });
  });

  describe('network failures', () => {
    it('times out a server that never answers', async () => {
      const server = await startOddServer(() => {});
      const client = createWebhookClient({ url: server.url, timeoutMs: 200 });
      const started = Date.now();
      try {
        expect(classification(await client.deliver(outboundMessage()))).to.deep.equal({
          outcome: 'transient',
          error: 'timeout after 200 ms',
        });
        expect(Date.now() - started).to.be.within(150, 1500);
      } finally {
        await client.close();
        await server.close();
      }
    });

    it('times out a response whose body never ends', async () => {
      const server = await startOddServer((_request, response) => {
        response.writeHead(200);
        response.write('{"messageId":');
      });
      const client = createWebhookClient({ url: server.url, timeoutMs: 200 });
      try {
        expect(classification(await client.deliver(outboundMessage()))).to.deep.equal({
          outcome: 'transient',
          error: 'timeout after 200 ms',
        });
      } finally {
        await client.close();
        await server.close();
      }
    });

    it('reports a refused connection as a transient network error', async () => {
      const port = await freePort();
      const client = createWebhookClient({ url: `http://127.0.0.1:${port}`, timeoutMs: 2000 });
      try {
        const result = (await client.deliver(outboundMessage())) as { outcome: string; error: string };
        expect(result.outcome).to.equal('transient');
        expect(result.error).to.match(/^network error: .*ECONNREFUSED/);
      } finally {
        await client.close();
      }
    });

    it('reports a connection dropped mid-request as a transient network error', async () => {
      const server = await startOddServer((request) => request.socket.destroy());
      const client = createWebhookClient({ url: server.url, timeoutMs: 2000 });
      try {
        const result = (await client.deliver(outboundMessage())) as { outcome: string; error: string };
        expect(result.outcome).to.equal('transient');
        expect(result.error).to.match(/^network error: /);
      } finally {
        await client.close();
        await server.close();
      }
    });
  });

  describe('what the delivery history keeps of an attempt', () => {
    it('the short error and the body as text', async () => {
      const result = await deliverTo(503, '{"error": "upstream busy"}\n');
      expect(result).to.deep.include({ attemptError: 'HTTP 503', responseExcerpt: '{"error": "upstream busy"}\n' });
      expect(await deliverTo(422, '')).to.not.have.property('responseExcerpt');
    });

    it('the body of an accepted delivery too, and no error', async () => {
      const result = await deliverTo(202, '{"messageId":"ext-1"}');
      expect(result).to.deep.include({ outcome: 'sent', responseExcerpt: '{"messageId":"ext-1"}' });
      expect(result).to.not.have.property('attemptError');
    });

    it('at most 1,024 characters, never cutting one in two (4-byte UTF-8, surrogate pairs in JavaScript)', async () => {
      const body = `${'x'.repeat(1_023)}${'👋'.repeat(3)}`;
      const result = await deliverTo(500, body);
      expect(result.responseExcerpt).to.equal(`${'x'.repeat(1_023)}👋`);
      expect([...result.responseExcerpt!]).to.have.length(1_024);
      expect(excerptOf('é'.repeat(2_000))).to.equal('é'.repeat(1_024));
      expect(excerptOf('short')).to.equal('short');
      expect(excerptOf('')).to.equal(undefined);
    });

    it('NUL, which PostgreSQL text cannot hold, as U+FFFD', async () => {
      expect(excerptOf('a\u0000b')).to.equal('a\uFFFDb');
    });

    it('no configured secret: auth value, signing secrets (with and without whsec_) and the signature redacted', async () => {
      const signingSecret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
      let signature = '';
      const server = await startOddServer((request, response) => {
        signature = String(request.headers['webhook-signature']);
        response.writeHead(401);
        response.end(
          `key=${request.headers['x-ins-auth-key']} secret=${signingSecret} raw=${signingSecret.slice(6)} sig=${signature}`,
        );
      });
      const client = createWebhookClient({
        url: server.url,
        authHeader: 'x-ins-auth-key',
        authValue: secret,
        timeoutMs: 2000,
        signer: createWebhookSigner([signingSecret]),
        signingSecrets: [signingSecret],
      });
      try {
        const result = (await client.deliver(outboundMessage())) as DeliveryResult & { error: string };
        const redacted = 'key=[redacted] secret=[redacted] raw=[redacted] sig=[redacted]';
        expect(result.responseExcerpt).to.equal(redacted);
        expect(result.error).to.equal(`HTTP 401: ${redacted}`);
        for (const value of [secret, signingSecret, signingSecret.slice(6), signature.slice(3)]) {
          expect(JSON.stringify(result)).to.not.include(value);
        }
      } finally {
        await client.close();
        await server.close();
      }
    });

    it('"timeout" and "connection refused" in short', async () => {
      const server = await startOddServer(() => {});
      const slow = createWebhookClient({ url: server.url, timeoutMs: 200 });
      const refused = createWebhookClient({ url: `http://127.0.0.1:${await freePort()}`, timeoutMs: 2000 });
      try {
        expect(await slow.deliver(outboundMessage())).to.deep.include({ attemptError: 'timeout' });
        expect(await refused.deliver(outboundMessage())).to.deep.include({ attemptError: 'connection refused' });
      } finally {
        await Promise.all([slow.close(), refused.close()]);
        await server.close();
      }
    });
  });

  describe('dry-run client', () => {
    it('marks every message sent with a dryrun- id and makes no request', async () => {
      const client = createDryRunClient();
      expect(client.mode).to.equal('dry-run');
      const first = await client.deliver(outboundMessage());
      const second = await client.deliver(outboundMessage());
      expect(first).to.include({ outcome: 'sent', httpStatus: 0 });
      const firstId = (first as { externalMessageId: string }).externalMessageId;
      expect(firstId).to.match(/^dryrun-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      expect((second as { externalMessageId: string }).externalMessageId).to.not.equal(firstId);
      await client.close();
    });
  });
});

describe('parseRetryAfter', () => {
  const now = Date.parse('2025-01-01T12:00:00Z');

  it('reads delta-seconds', () => {
    expect(parseRetryAfter('120', now)).to.equal(120_000);
    expect(parseRetryAfter(' 0 ', now)).to.equal(0);
  });

  it('reads an HTTP-date relative to now, never negative', () => {
    expect(parseRetryAfter('Wed, 01 Jan 2025 12:00:30 GMT', now)).to.equal(30_000);
    expect(parseRetryAfter('Wed, 01 Jan 2025 11:00:00 GMT', now)).to.equal(0);
  });

  it('ignores what it cannot read', () => {
    for (const value of [undefined, '', 'soon', '-1', '1.5', '12abc']) {
      expect(parseRetryAfter(value, now), String(value)).to.equal(undefined);
    }
  });
});

describe('retry policy', () => {
  describe('backoffDelayMs', () => {
    const almostOne = () => 0.999_999;

    it('doubles the ceiling with each attempt from baseMs', () => {
      expect(backoffDelayMs(1, { random: almostOne })).to.equal(999);
      expect(backoffDelayMs(2, { random: almostOne })).to.equal(1999);
      expect(backoffDelayMs(5, { random: almostOne })).to.equal(15_999);
      expect(backoffDelayMs(3, { baseMs: 10, random: almostOne })).to.equal(39);
    });

    it('never goes above maxMs, however many attempts', () => {
      expect(backoffDelayMs(20, { random: almostOne })).to.equal(299_999);
      expect(backoffDelayMs(5000, { random: almostOne })).to.equal(299_999);
      expect(backoffDelayMs(10, { maxMs: 5000, random: almostOne })).to.equal(4999);
    });

    it('uses full jitter: anywhere from 0 up to the ceiling', () => {
      expect(backoffDelayMs(4, { random: () => 0 })).to.equal(0);
      expect(backoffDelayMs(4, { random: () => 0.5 })).to.equal(4000);
      const samples = Array.from({ length: 2000 }, () => backoffDelayMs(3));
      expect(Math.min(...samples)).to.be.at.least(0);
      expect(Math.max(...samples)).to.be.below(4000);
      expect(new Set(samples).size).to.be.greaterThan(100);
    });

    it('treats attempt 0 or nonsense as the first attempt', () => {
      expect(backoffDelayMs(0, { random: almostOne })).to.equal(999);
      expect(backoffDelayMs(Number.NaN, { random: almostOne })).to.equal(999);
    });
  });

  describe('decideOutcome', () => {
    const half = { random: () => 0.5 };

    it('records a sent result', () => {
      expect(decideOutcome({ outcome: 'sent', externalMessageId: 'abc', httpStatus: 202 }, 1, 5)).to.deep.equal({
        status: 'sent',
        externalMessageId: 'abc',
      });
    });

    it('fails a permanent result at once', () => {
      expect(decideOutcome({ outcome: 'permanent', error: 'HTTP 400: bad', httpStatus: 400 }, 1, 5)).to.deep.equal({
        status: 'failed',
        error: 'HTTP 400: bad',
        reason: 'permanent',
      });
    });

    it('sends a transient failure back to pending after the backoff', () => {
      expect(decideOutcome({ outcome: 'transient', error: 'HTTP 503' }, 3, 5, half)).to.deep.equal({
        status: 'pending',
        retryDelayMs: 2000,
        error: 'HTTP 503',
      });
    });

    it('waits the longer of Retry-After and the backoff', () => {
      const longer = decideOutcome({ outcome: 'transient', error: 'HTTP 429', retryAfterMs: 7000 }, 1, 5, half);
      expect(longer).to.include({ status: 'pending', retryDelayMs: 7000 });
      const shorter = decideOutcome({ outcome: 'transient', error: 'HTTP 429', retryAfterMs: 100 }, 1, 5, half);
      expect(shorter).to.include({ status: 'pending', retryDelayMs: 500 });
    });

    it('caps an enormous Retry-After', () => {
      const decision = decideOutcome(
        { outcome: 'transient', error: 'HTTP 429', retryAfterMs: 10 * 24 * 3600_000 },
        1,
        5,
        half,
      );
      expect(decision).to.include({ status: 'pending', retryDelayMs: MAX_RETRY_AFTER_MS });
    });

    it('gives up on a transient failure once attempts reach the maximum', () => {
      expect(decideOutcome({ outcome: 'transient', error: 'timeout after 5000 ms' }, 5, 5)).to.deep.equal({
        status: 'failed',
        error: 'timeout after 5000 ms (gave up after 5 attempts)',
        reason: 'attempts_exhausted',
      });
      expect(decideOutcome({ outcome: 'transient', error: 'HTTP 503' }, 7, 5)).to.include({ status: 'failed' });
      expect(decideOutcome({ outcome: 'transient', error: 'HTTP 503' }, 1, 1)).to.include({
        error: 'HTTP 503 (gave up after 1 attempt)',
      });
      expect(decideOutcome({ outcome: 'transient', error: 'HTTP 503' }, 4, 5)).to.include({ status: 'pending' });
    });
  });
});
