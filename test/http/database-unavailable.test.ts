import { expect } from 'chai';
import pg from 'pg';
import { testServer, useTestDatabase } from '../support/postgres.ts';
import { api, eventually, startTestService, type TestService } from '../support/service.ts';

/**
 * PostgreSQL unreachable (issue 9, fault 2): database routes answer 503
 * `unavailable` with Retry-After, never 500; readiness turns 503; both come
 * back on their own. The fault suite does the same with a stopped server.
 */
describe('API while the database is unreachable', function () {
  this.timeout(60_000);
  const db = useTestDatabase();
  let service: TestService;
  before(async () => {
    service = await startTestService(db().url, { DATABASE_CONNECT_TIMEOUT_MS: '1000' }, { startEngine: false });
  });
  after(() => service?.stop());

  it('answers 503 unavailable with Retry-After, then 200 again when it is back', async () => {
    await admin(`ALTER DATABASE ${db().name} ALLOW_CONNECTIONS false`);
    try {
      await admin(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${db().name}'`);
      await expectUnavailable();
    } finally {
      await admin(`ALTER DATABASE ${db().name} ALLOW_CONNECTIONS true`);
    }
    await eventually(
      async () => (await api(service.url, 'GET', '/health-check')).status,
      (status) => status === 200,
    );
    expect((await api(service.url, 'POST', '/messages', { to: '+905551111111', content: 'x' })).status).to.equal(201);
  });

  async function expectUnavailable(): Promise<void> {
    for (const [method, path, body] of [
      ['POST', '/messages', { to: '+905551111111', content: 'x' }],
      ['GET', '/messages/sent', undefined],
      ['GET', '/jobs', undefined],
      ['PUT', '/jobs/stop', undefined],
    ] as const) {
      const answer = await api(service.url, method, path, body);
      expect([answer.status, answer.body?.error?.code], `${method} ${path}`).to.deep.equal([503, 'unavailable']);
      expect(Number(answer.headers.get('retry-after')), `${method} ${path} Retry-After`).to.be.greaterThan(0);
    }
    const health = await api(service.url, 'GET', '/health-check');
    expect([health.status, health.body.checks.database]).to.deep.equal([503, 'down']);
  }
});

async function admin(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: (await testServer()).adminUrl });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}
