import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { type RunningSink, startSink } from '../../src/sink/server.ts';
import { launchNode } from '../support/processes.ts';

const message = { to: '+905551111111', content: 'hello' };

async function post(url: string, body: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as Record<string, string> };
}

describe('webhook sink', () => {
  describe('contract', () => {
    let sink: RunningSink;
    before(async () => {
      sink = await startSink();
    });
    after(() => sink.close());
    beforeEach(() => {
      sink.clear();
      sink.configure({ failureRate: 0, statusCode: undefined, latencyMs: 0, maxConcurrent: undefined });
    });

    it('serves at most maxConcurrent at once and answers the next one 503 at once, without Retry-After', async () => {
      sink.configure({ maxConcurrent: 2, latencyMs: 300 });
      const held = [1, 2].map((i) => post(sink.url, message, { 'idempotency-key': `held${i}` }));
      // Both held requests are recorded (and being served) before the third is sent.
      while (sink.received().total < 2) await new Promise((resolve) => setImmediate(resolve));
      const refused = await fetch(sink.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': 'third' },
        body: JSON.stringify(message),
      });
      expect(refused.status).to.equal(503);
      expect(refused.headers.get('retry-after')).to.equal(null);
      expect(await refused.json()).to.deep.equal({ message: 'more than 2 at once' });
      expect((await Promise.all(held)).map((reply) => reply.status)).to.deep.equal([202, 202]);
      expect((await post(sink.url, message, { 'idempotency-key': 'third' })).status).to.equal(202);
    });

    it('accepts a message on any path with 202 and a messageId, and records it', async () => {
      for (const path of ['/', '/webhook', '/any/where?x=1']) {
        const reply = await post(`${sink.url}${path}`, message, { 'idempotency-key': `key${path}` });
        expect(reply.status, path).to.equal(202);
        expect(reply.body.message).to.equal('Accepted');
        expect(reply.body.messageId).to.match(/^[0-9a-f-]{36}$/);
      }
      const report = sink.received();
      expect(report).to.include({ total: 3, accepted: 3, unique: 3 });
      expect(report.items[1]).to.include({
        idempotencyKey: 'key/webhook',
        to: message.to,
        content: message.content,
        status: 202,
      });
    });

    it('records a repeated Idempotency-Key as a duplicate and answers it with the same messageId', async () => {
      const first = await post(sink.url, message, { 'idempotency-key': 'same' });
      const second = await post(sink.url, { ...message, content: 'changed' }, { 'idempotency-key': 'same' });
      const other = await post(sink.url, message, { 'idempotency-key': 'other' });
      expect(second.body.messageId).to.equal(first.body.messageId);
      expect(other.body.messageId).to.not.equal(first.body.messageId);
      expect(sink.received()).to.include({ total: 3, accepted: 3, unique: 2 });
      expect(sink.received().duplicates).to.deep.equal(['same']);
    });

    it('does not count a failed attempt and its successful retry as a duplicate', async () => {
      sink.configure({ failureRate: 1 });
      expect((await post(sink.url, message, { 'idempotency-key': 'retried' })).status).to.equal(503);
      sink.configure({ failureRate: 0 });
      expect((await post(sink.url, message, { 'idempotency-key': 'retried' })).status).to.equal(202);
      const report = sink.received();
      expect(report).to.include({ total: 2, accepted: 1, unique: 1 });
      expect(report.duplicates).to.deep.equal([]);
      expect(report.items.map((item) => item.status)).to.deep.equal([503, 202]);
    });

    it('answers 503 to every delivery at failure rate 1', async () => {
      sink.configure({ failureRate: 1 });
      for (let i = 0; i < 5; i++) {
        const reply = await post(sink.url, message, { 'idempotency-key': `k${i}` });
        expect(reply).to.deep.equal({ status: 503, body: { message: 'injected failure' } });
      }
      expect(sink.received()).to.include({ total: 5, accepted: 0, unique: 0 });
    });

    it('fails about the configured fraction', async () => {
      sink.configure({ failureRate: 0.5 });
      const statuses = [];
      for (let i = 0; i < 200; i++)
        statuses.push((await post(sink.url, message, { 'idempotency-key': `f${i}` })).status);
      const failed = statuses.filter((status) => status === 503).length;
      expect(failed).to.be.within(50, 150);
    });

    it('answers a forced status; a forced 2xx still carries the messageId', async () => {
      sink.configure({ statusCode: 500 });
      expect(await post(sink.url, message, { 'idempotency-key': 'forced' })).to.deep.equal({
        status: 500,
        body: { message: 'forced status 500' },
      });
      sink.configure({ statusCode: 200 });
      const ok = await post(sink.url, message, { 'idempotency-key': 'forced' });
      expect(ok.status).to.equal(200);
      expect(ok.body.messageId).to.be.a('string');
    });

    it('rejects bad JSON, missing fields and a missing Idempotency-Key with 400', async () => {
      expect((await post(sink.url, '{"to":', { 'idempotency-key': 'a' })).status).to.equal(400);
      expect((await post(sink.url, { content: 'x' }, { 'idempotency-key': 'a' })).status).to.equal(400);
      expect((await post(sink.url, { to: '+905551111111' }, { 'idempotency-key': 'a' })).status).to.equal(400);
      expect((await post(sink.url, '"just a string"', { 'idempotency-key': 'a' })).status).to.equal(400);
      const noKey = await post(sink.url, message);
      expect(noKey).to.deep.equal({ status: 400, body: { message: 'missing Idempotency-Key header' } });
      expect(sink.received()).to.include({ total: 5, accepted: 0 });
    });

    it('waits the configured latency before answering', async () => {
      sink.configure({ latencyMs: 150 });
      const started = Date.now();
      await post(sink.url, message, { 'idempotency-key': 'slow' });
      expect(Date.now() - started).to.be.at.least(140);
    });

    it('reports over HTTP on GET /received and forgets on DELETE /received', async () => {
      await post(sink.url, message, { 'idempotency-key': 'x1' });
      await post(sink.url, message, { 'idempotency-key': 'x1' });
      const report = (await (await fetch(`${sink.url}/received`)).json()) as Record<string, unknown>;
      expect(report).to.include({ total: 2, accepted: 2, unique: 1 });
      expect(report.duplicates).to.deep.equal(['x1']);
      expect(report.items).to.have.length(2);

      const cleared = await fetch(`${sink.url}/received`, { method: 'DELETE' });
      expect(await cleared.json()).to.deep.equal({ cleared: 2 });
      expect(sink.received()).to.deep.equal({ total: 0, accepted: 0, unique: 0, duplicates: [], items: [] });
    });

    it('answers 405 to methods other than POST and 200 on GET /health', async () => {
      expect((await fetch(`${sink.url}/webhook`)).status).to.equal(405);
      expect((await fetch(`${sink.url}/received`, { method: 'PUT' })).status).to.equal(405);
      expect(await (await fetch(`${sink.url}/health`)).json()).to.deep.equal({ status: 'ok' });
    });
  });

  describe('auth header', () => {
    let sink: RunningSink;
    before(async () => {
      sink = await startSink({ authHeader: 'X-Ins-Auth-Key', authValue: 'secret' });
    });
    after(() => sink.close());

    it('answers 401 without the header or with a wrong value, 202 with the right one', async () => {
      expect((await post(sink.url, message, { 'idempotency-key': 'a' })).status).to.equal(401);
      expect((await post(sink.url, message, { 'idempotency-key': 'a', 'x-ins-auth-key': 'wrong' })).status).to.equal(
        401,
      );
      expect((await post(sink.url, message, { 'idempotency-key': 'a', 'x-ins-auth-key': 'secret' })).status).to.equal(
        202,
      );
      expect(sink.received().items.map((item) => item.status)).to.deep.equal([401, 401, 202]);
      expect(sink.received()).to.include({ accepted: 1, unique: 1 });
    });

    it('requires the header name and value together', async () => {
      let error: unknown;
      try {
        await startSink({ authHeader: 'x-ins-auth-key' });
      } catch (caught) {
        error = caught;
      }
      expect(String(error)).to.match(/set together/);
    });
  });

  it('answers 413 to a body over the cap', async () => {
    const sink = await startSink({ maxBodyBytes: 100 });
    try {
      const reply = await post(sink.url, { ...message, content: 'x'.repeat(200) }, { 'idempotency-key': 'big' });
      expect(reply.status).to.equal(413);
    } finally {
      await sink.close();
    }
  });

  describe('npm run sink (src/sink/main.ts)', () => {
    const mainPath = fileURLToPath(new URL('../../src/sink/main.ts', import.meta.url));

    it('starts from flags, prints its URL, applies them, and stops cleanly on SIGTERM', async () => {
      const sink = launchNode(mainPath, { args: ['--port', '0', '--host', '127.0.0.1', '--failure-rate', '1'] });
      try {
        const [, url] = await sink.waitForOutput(/listening on (http:\/\/\S+)/, 30_000);
        expect((await post(url!, message, { 'idempotency-key': 'p1' })).status).to.equal(503);
        const { code } = await sink.stop('SIGTERM');
        expect(code).to.equal(0);
        expect(sink.output()).to.match(/sink stopped on SIGTERM: 1 received, 0 accepted/);
      } finally {
        sink.kill('SIGKILL');
      }
    });

    /** Starts main.ts with `args`, resolves with its first output line and the child. */
    async function startMain(args: string[]) {
      const child = launchNode(mainPath, { args });
      const { msg: line } = await child.waitForLine(() => true);
      return { child, line: String(line) };
    }

    /** Whether a TCP connection to host:port is accepted. 127.0.0.2 is loopback too, but only a wildcard bind answers it. */
    function accepts(host: string, port: number): Promise<boolean> {
      return new Promise((resolve) => {
        const socket = connect({ host, port }, () => {
          socket.destroy();
          resolve(true);
        });
        socket.once('error', () => resolve(false));
      });
    }

    it('binds 127.0.0.1 by default, the address it prints', async () => {
      const { child, line } = await startMain(['--port', '0']);
      try {
        const match = /^webhook sink listening on http:\/\/127\.0\.0\.1:(\d+)$/.exec(line);
        expect(match, line).to.not.equal(null);
        const port = Number(match![1]);
        expect(await accepts('127.0.0.1', port)).to.equal(true);
        expect(await accepts('127.0.0.2', port), 'reachable beyond 127.0.0.1').to.equal(false);
      } finally {
        child.kill('SIGKILL');
      }
    });

    it('binds all interfaces with --host 0.0.0.0 (compose) and says so', async () => {
      const { child, line } = await startMain(['--port', '0', '--host', '0.0.0.0']);
      try {
        const match = /^webhook sink listening on http:\/\/127\.0\.0\.1:(\d+) \(bound to 0\.0\.0\.0:(\d+)\)$/.exec(
          line,
        );
        expect(match, line).to.not.equal(null);
        expect(await accepts('127.0.0.2', Number(match![1]))).to.equal(true);
      } finally {
        child.kill('SIGKILL');
      }
    });

    it('refuses an invalid flag with exit code 2 and names it', async () => {
      const sink = launchNode(mainPath, { args: ['--failure-rate', '1.5'] });
      const { code } = await sink.exited;
      expect(code).to.equal(2);
      expect(sink.output()).to.include('--failure-rate (SINK_FAILURE_RATE) must be a number 0..1, got "1.5"');
    });

    it('takes its settings from the environment too', async () => {
      const sink = launchNode(mainPath, { env: { SINK_LATENCY_MS: '-5' } });
      const { code } = await sink.exited;
      expect(code).to.equal(2);
      expect(sink.output()).to.include('--latency-ms (SINK_LATENCY_MS) must be an integer 0..600000, got "-5"');
    });
  });
});
