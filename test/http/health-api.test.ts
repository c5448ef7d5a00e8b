import { expect } from 'chai';
import pg from 'pg';
import { testServer, useTestDatabase } from '../support/postgres.ts';
import { api, eventually, startTestService, type TestService } from '../support/service.ts';

describe('health, metrics and Swagger UI over HTTP', () => {
  const db = useTestDatabase();
  let service: TestService;
  before(async () => {
    service = await startTestService(db().url);
  });
  after(() => service.stop());

  it('is alive', async () => {
    const { status, body } = await api(service.url, 'GET', '/health-alive');
    expect([status, body]).to.deep.equal([200, { status: 'alive' }]);
  });

  it('is ready, and reports every dependency (dry-run delivery without a webhook)', async () => {
    const { status, body, headers } = await api(service.url, 'GET', '/health-check');
    expect(status).to.equal(200);
    expect(body).to.deep.equal({
      status: 'ok',
      checks: { database: 'ok', queue: 'ok', redis: 'disabled', vault: 'disabled', delivery: 'dry-run' },
    });
    expect(headers.get('x-request-id')).to.match(/^[0-9a-f-]{36}$/);
  });

  it('echoes a caller request id', async () => {
    const { headers } = await api(service.url, 'GET', '/health-alive', undefined, { 'x-request-id': 'abc-123' });
    expect(headers.get('x-request-id')).to.equal('abc-123');
  });

  it('serves Prometheus metrics labelled with OpenAPI path templates, not raw paths', async () => {
    await api(service.url, 'GET', '/jobs/no-such-job');
    const { status, body, headers } = await api(service.url, 'GET', '/metrics');
    expect(status).to.equal(200);
    expect(headers.get('content-type')).to.match(/^text\/plain/);
    expect(body).to.match(/job_manager_messages_pending \d+/);
    expect(body).to.match(/job_manager_jobs\{status="active"\} \d/);
    expect(body).to.include('route="/jobs/{name}"');
    expect(body).to.not.include('no-such-job');
  });

  it('serves Swagger UI over openapi.yaml', async () => {
    const page = await fetch(`${service.url}/swagger/index.html`);
    expect(page.status).to.equal(200);
    const html = await page.text();
    expect(html).to.include('<title>job-manager</title>').and.to.include('./swagger-ui-init.js');
    expect(html).to.not.match(/<script>/); // no inline script: the page works under script-src 'self'
    expect(page.headers.get('content-security-policy')).to.include("script-src 'self'");
    const init = await (await fetch(`${service.url}/swagger/swagger-ui-init.js`)).text();
    expect(init).to.include("url: './openapi.json'").and.not.include('petstore');
    const served = (await (await fetch(`${service.url}/swagger/openapi.json`)).json()) as { paths: object };
    expect(served.paths).to.have.property('/jobs/start');
    for (const path of ['/swagger', '/swagger/']) {
      const redirect = await fetch(`${service.url}${path}`, { redirect: 'manual' });
      expect(redirect.status, path).to.equal(301);
      expect(redirect.headers.get('location'), path).to.equal('/swagger/index.html');
    }
    // Only the UI's assets from swagger-ui-dist, never its stock Petstore initializer or package files.
    expect((await fetch(`${service.url}/swagger/swagger-ui-bundle.js`)).status).to.equal(200);
    expect((await fetch(`${service.url}/swagger/swagger-initializer.js`)).status).to.equal(404);
    expect((await fetch(`${service.url}/swagger/package.json`)).status).to.equal(404);
    expect((await fetch(`${service.url}/swagger/docs`)).status).to.equal(404);
  });

  it('answers another method on a Swagger page 405 with Allow, like every other route', async () => {
    const pages = [
      '/swagger',
      '/swagger/',
      '/swagger/index.html',
      '/swagger/openapi.json',
      '/swagger/swagger-ui-bundle.js',
    ];
    for (const path of pages) {
      for (const method of ['POST', 'PUT', 'DELETE']) {
        const answer = await api(service.url, method, path);
        expect(answer.status, `${method} ${path}`).to.equal(405);
        expect(answer.headers.get('allow'), `${method} ${path}`).to.equal('GET, HEAD');
        expect(answer.body.error.code, `${method} ${path}`).to.equal('method_not_allowed');
      }
      expect((await fetch(`${service.url}${path}`, { method: 'HEAD', redirect: 'manual' })).status).to.be.oneOf([
        200, 301,
      ]);
    }
    // A file the UI does not serve stays unknown, whatever the method.
    expect((await api(service.url, 'POST', '/swagger/package.json')).status).to.equal(404);
  });
});

describe('health-check when the database is gone', () => {
  const db = useTestDatabase();
  it('answers 503 degraded', async function () {
    this.timeout(60_000);
    const service = await startTestService(db().url);
    // One connection we keep: it closes the database to everyone else and reopens it.
    const admin = new pg.Client({ connectionString: (await testServer()).adminUrl });
    await admin.connect();
    const kickEveryoneElse = `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${db().name}'`;
    try {
      await admin.query(`ALTER DATABASE ${db().name} ALLOW_CONNECTIONS false`);
      await admin.query(kickEveryoneElse);
      // pg_terminate_backend only signals: wait until the sessions are really gone, or the check
      // could still run on one of the service's idle connections.
      await eventually(
        async () =>
          (await admin.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1', [db().name])).rows[0]
            .n,
        (sessions) => sessions === 0,
      );
      const { status, body } = await api(service.url, 'GET', '/health-check');
      expect(status).to.equal(503);
      expect(body.status).to.equal('degraded');
      expect(body.checks.database).to.equal('down');
    } finally {
      await admin.query(`ALTER DATABASE ${db().name} ALLOW_CONNECTIONS true`);
      await admin.end();
      await service.stop();
    }
  });
});
