// An unreachable database is a 503 `unavailable` with Retry-After, never a
// 500: the connection refused, a dead route that never answers (the pool's
// checkout timeout), and the database dropped under the service. Real HTTP,
// a real PostgreSQL, a real network path cut by a TCP forwarder.
import { expect } from 'chai';
import { operations, responseProblems } from '../support/openapi-contract.ts';
import { createTestDatabase, dropTestDatabase, useTestDatabase } from '../support/postgres.ts';
import { type RawResponse, rawRequest } from '../support/raw-http.ts';
import { startTestService, type TestService } from '../support/service.ts';
import { startTcpForwarder, type TcpForwarder } from '../support/tcp-forwarder.ts';

const operationFor = (method: string, path: string) =>
  operations().find((operation) => operation.method === method && operation.path === path)!;

function expectUnavailable(response: RawResponse, method: string, path: string) {
  const where = `${method} ${path}`;
  expect(response.status, `${where}: ${response.text}`).to.equal(503);
  expect(JSON.parse(response.text), where).to.deep.equal({
    error: { code: 'unavailable', message: 'the database is unavailable; retry later' },
  });
  expect(response.headers.get('retry-after'), where).to.equal('5');
  expect(responseProblems(operationFor(method, path), response), where).to.deep.equal([]);
}

describe('database unavailable: 503 with Retry-After, never 500', function () {
  this.timeout(90_000);

  describe('behind a network path that is cut', () => {
    const db = useTestDatabase();
    let forwarder: TcpForwarder;
    let service: TestService;
    before(async () => {
      const target = new URL(db().url);
      forwarder = await startTcpForwarder(target.hostname, Number(target.port || 5432));
      const viaForwarder = new URL(db().url);
      viaForwarder.hostname = '127.0.0.1';
      viaForwarder.port = String(forwarder.port);
      service = await startTestService(viaForwarder.toString(), { FETCH_INTERVAL_MS: '3600000' });
    });
    after(async () => {
      await forwarder.open();
      await service.stop();
      await forwarder.stop();
    });

    const message = JSON.stringify({ to: '+905551111111', content: 'hello' });
    const calls: Array<[string, string, string, string | undefined]> = [
      ['GET', '/jobs', '/jobs', undefined],
      ['GET', '/jobs/message-sender', '/jobs/{name}', undefined],
      ['PUT', '/jobs/stop', '/jobs/stop', undefined],
      ['POST', '/messages', '/messages', message],
      ['GET', '/messages/sent', '/messages/sent', undefined],
    ];
    const call = (method: string, path: string, body?: string) =>
      rawRequest(service.url, method, path, { body, headers: body ? { 'content-type': 'application/json' } : {} });

    it('answers 503 when connections are refused, and serves again when the path is back', async () => {
      expect((await call('GET', '/jobs')).status).to.equal(200);
      await forwarder.close();
      for (const [method, path, template, body] of calls)
        expectUnavailable(await call(method, path, body), method, template);
      const health = await call('GET', '/health-check');
      expect(health.status).to.equal(503);
      expect(JSON.parse(health.text).checks.database).to.equal('down');
      expect((await call('GET', '/health-alive')).status, 'the process stays up').to.equal(200);
      // Prometheus keeps the pod during the outage: the database gauges keep their last value.
      const scrape = await call('GET', '/metrics');
      expect(scrape.status).to.equal(200);
      expect(scrape.headers.get('content-type')).to.match(/^text\/plain/);
      expect(scrape.text).to.match(/^job_manager_messages_pending \d+$/m);
      expect(scrape.text).to.match(/^job_manager_webhook_breaker_state\{state="closed"\} 1$/m);
      await forwarder.open();
      expect((await call('GET', '/jobs')).status).to.equal(200);
      expect((await call('POST', '/messages', message)).status).to.equal(201);
    });

    it('answers 503 when a connection attempt never completes (the pool checkout times out)', async () => {
      await forwarder.blackHole();
      try {
        // Pool connections of the first test were dropped with the path: every query needs a new one.
        expectUnavailable(await call('GET', '/messages/sent'), 'GET', '/messages/sent');
      } finally {
        await forwarder.open();
      }
    });
  });

  describe('when the database is dropped under the service', () => {
    it('answers 503, not 500', async () => {
      const doomed = await createTestDatabase();
      // A short shutdown: the database is gone, so stopping waits for nothing that can still answer.
      const service = await startTestService(doomed.url, { FETCH_INTERVAL_MS: '3600000', SHUTDOWN_TIMEOUT_MS: '1000' });
      try {
        expect((await rawRequest(service.url, 'GET', '/jobs')).status).to.equal(200);
        await dropTestDatabase(doomed); // WITH (FORCE): terminates the service's sessions
        expectUnavailable(await rawRequest(service.url, 'GET', '/jobs'), 'GET', '/jobs');
        expectUnavailable(
          await rawRequest(service.url, 'POST', '/messages/batch', {
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ messages: [{ to: '+905551111111', content: 'x' }] }),
          }),
          'POST',
          '/messages/batch',
        );
      } finally {
        await service.stop();
      }
    });
  });
});
