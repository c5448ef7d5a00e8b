// Issue 10, point 8: the intake rate limit counts per API key (whichever
// header carried it), else per client address, and behind a proxy the client
// address comes from X-Forwarded-For only when TRUST_PROXY says so.
import { expect } from 'chai';
import { operations, responseProblems } from '../support/openapi-contract.ts';
import { useTestDatabase } from '../support/postgres.ts';
import { rawRequest } from '../support/raw-http.ts';
import { startTestService, type TestService } from '../support/service.ts';

const message = JSON.stringify({ to: '+905551111111', content: 'hi' });
const createMessage = operations().find((operation) => operation.operationId === 'createMessage')!;

describe('intake rate limit per client (issue 10, point 8)', () => {
  const db = useTestDatabase();
  const services: TestService[] = [];
  const start = async (settings: Record<string, string>) => {
    const service = await startTestService(db().url, {
      FETCH_INTERVAL_MS: '3600000',
      RATE_LIMIT_PER_MINUTE: '2',
      ...settings,
    });
    services.push(service);
    return service;
  };
  after(async () => {
    for (const service of services) await service.stop();
  });
  const post = async (service: TestService, headers: Record<string, string>) => {
    const response = await rawRequest(service.url, 'POST', '/messages', {
      headers: { 'content-type': 'application/json', ...headers },
      body: message,
    });
    expect(responseProblems(createMessage, response)).to.deep.equal([]);
    return response.status;
  };

  it('counts an intake request at any path express serves it: a trailing slash is the same bucket', async () => {
    const service = await start({});
    const statuses: number[] = [];
    for (const path of ['/messages', '/messages/', '/messages/', '/messages/batch/']) {
      const body = path.startsWith('/messages/batch') ? JSON.stringify({ messages: [JSON.parse(message)] }) : message;
      const response = await rawRequest(service.url, 'POST', path, {
        headers: { 'content-type': 'application/json' },
        body,
      });
      statuses.push(response.status);
    }
    expect(statuses).to.deep.equal([201, 201, 429, 429]);
    expect(await post(service, {})).to.equal(429);
  });

  it('gives each API key its own bucket, the same whether the key came as Bearer or X-API-Key', async () => {
    const service = await start({ API_KEYS: 'key-a,key-b,key-c' });
    expect(await post(service, { authorization: 'Bearer key-a' })).to.equal(201);
    expect(await post(service, { 'x-api-key': 'key-a' })).to.equal(201);
    expect(await post(service, { authorization: 'Bearer key-a' }), 'key-a spent, by Bearer').to.equal(429);
    expect(await post(service, { 'x-api-key': 'key-a' }), 'key-a spent, by X-API-Key').to.equal(429);
    // Two Bearer clients used to share one bucket; now each key has its own.
    expect(await post(service, { authorization: 'Bearer key-b' })).to.equal(201);
    expect(await post(service, { authorization: 'Bearer key-c' })).to.equal(201);
    expect(await post(service, { authorization: 'Bearer key-b' })).to.equal(201);
    expect(await post(service, { authorization: 'Bearer key-b' })).to.equal(429);
    const limited = await rawRequest(service.url, 'POST', '/messages', {
      headers: { 'content-type': 'application/json', 'x-api-key': 'key-a' },
      body: message,
    });
    expect(Number(limited.headers.get('retry-after'))).to.be.within(1, 60);
    expect(JSON.parse(limited.text).error.code).to.equal('rate_limited');
  });

  it('behind a trusted proxy (TRUST_PROXY), counts per client from X-Forwarded-For', async () => {
    const service = await start({ TRUST_PROXY: '127.0.0.1' });
    const client = (address: string) => ({ 'x-forwarded-for': address });
    expect(await post(service, client('203.0.113.1'))).to.equal(201);
    expect(await post(service, client('203.0.113.1'))).to.equal(201);
    expect(await post(service, client('203.0.113.1'))).to.equal(429);
    // The second client behind the same proxy is not blocked by the first.
    expect(await post(service, client('203.0.113.2'))).to.equal(201);
    // A client cannot escape by prepending addresses: the proxy appends the real one, which counts.
    expect(await post(service, client('198.51.100.7, 203.0.113.1'))).to.equal(429);
  });

  it('with a hop count (TRUST_PROXY=1) takes the address the one proxy appended', async () => {
    const service = await start({ TRUST_PROXY: '1' });
    expect(await post(service, { 'x-forwarded-for': '203.0.113.9' })).to.equal(201);
    expect(await post(service, { 'x-forwarded-for': '203.0.113.9' })).to.equal(201);
    expect(await post(service, { 'x-forwarded-for': '203.0.113.9' })).to.equal(429);
    expect(await post(service, { 'x-forwarded-for': '203.0.113.10' })).to.equal(201);
  });

  it('without TRUST_PROXY ignores X-Forwarded-For: a client cannot pick its own address', async () => {
    const service = await start({});
    expect(await post(service, { 'x-forwarded-for': '203.0.113.1' })).to.equal(201);
    expect(await post(service, { 'x-forwarded-for': '203.0.113.2' })).to.equal(201);
    expect(await post(service, { 'x-forwarded-for': '203.0.113.3' })).to.equal(429);
  });
});
