// A read-only server (the endpoint still at a standby, or a demoted primary
// after a failover), simulated on this file's own database with
// `ALTER DATABASE … SET default_transaction_read_only = on` and new sessions:
// intake is a 503 `unavailable` with Retry-After (never a 500), the health
// check reads `database: down` (503), a pooled connection found read-only is
// destroyed rather than reused, and the service recovers on its own once
// writes work again.
import net from 'node:net';
import { expect } from 'chai';
import { databaseErrorKind } from '../../src/db/errors.ts';
import { DatabaseReadOnlyError, databaseHealthCheck } from '../../src/db/health-check.ts';
import { createPool, type Pool } from '../../src/db/pool.ts';
import { withTransaction } from '../../src/db/transaction.ts';
import { adminQuery, useTestDatabase } from '../support/postgres.ts';
import { api, eventually, startTestService, type TestService } from '../support/service.ts';

async function errorOf(action: () => Promise<unknown>): Promise<unknown> {
  try {
    await action();
  } catch (error) {
    return error;
  }
  throw new Error('expected an error');
}

/**
 * A server that answers every start-up packet as PostgreSQL does while it
 * starts, stops or is a standby not yet accepting connections: FATAL 57P03.
 */
async function cannotConnectNowServer(): Promise<net.Server> {
  const field = (type: string, value: string) => Buffer.concat([Buffer.from(type), Buffer.from(`${value}\0`)]);
  const body = Buffer.concat([
    field('S', 'FATAL'),
    field('V', 'FATAL'),
    field('C', '57P03'),
    field('M', 'the database system is not yet accepting connections'),
    Buffer.from([0]),
  ]);
  const length = Buffer.alloc(4);
  length.writeInt32BE(body.length + 4);
  const reply = Buffer.concat([Buffer.from('E'), length, body]);
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    socket.once('data', () => socket.end(reply));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

describe('a read-only database server', function () {
  this.timeout(60_000);

  it('calls 57P03 (cannot_connect_now) from a real start-up reply unavailable', async () => {
    const server = await cannotConnectNowServer();
    const pool = createPool({
      connectionString: `postgres://postgres@127.0.0.1:${(server.address() as net.AddressInfo).port}/x`,
    });
    try {
      const error = await errorOf(() => pool.query('SELECT 1'));
      expect((error as { code?: string }).code).to.equal('57P03');
      expect(databaseErrorKind(error)).to.equal('unavailable');
    } finally {
      await pool.end();
      server.close();
    }
  });

  describe('pooled connections', () => {
    const db = useTestDatabase();
    let pool: Pool;
    before(() => {
      // One connection, so a reused one would be the same backend.
      pool = createPool({ connectionString: db().url, max: 1, applicationName: 'read-only-test' });
    });
    after(() => pool.end());

    const backendPid = async () => (await pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    const makeSessionReadOnly = () => pool.query('SET SESSION default_transaction_read_only = on');

    it('destroys a connection whose transaction failed with 25006 instead of reusing it', async () => {
      await makeSessionReadOnly();
      const readOnlyPid = await backendPid();
      const error = await errorOf(() =>
        withTransaction(pool, (client) => client.query("INSERT INTO messages (recipient, content) VALUES ('x', 'y')")),
      );
      expect((error as { code?: string }).code).to.equal('25006');
      expect(databaseErrorKind(error)).to.equal('unavailable');
      expect(await backendPid(), 'a new connection after 25006').to.not.equal(readOnlyPid);
      await withTransaction(pool, (client) => client.query('CREATE TEMP TABLE written (x int)'));
    });

    it('destroys a pool.query connection that failed with 25006', async () => {
      await makeSessionReadOnly();
      const readOnlyPid = await backendPid();
      const error = await errorOf(() => pool.query('CREATE TEMP TABLE refused (x int)'));
      expect((error as { code?: string }).code).to.equal('25006');
      expect(await backendPid()).to.not.equal(readOnlyPid);
    });

    it('health check: a read-only session reads down and its connection is destroyed', async () => {
      const check = databaseHealthCheck(pool);
      expect(await check.check()).to.equal('ok');
      await makeSessionReadOnly();
      const readOnlyPid = await backendPid();
      const error = await errorOf(() => check.check());
      expect(error).to.be.instanceOf(DatabaseReadOnlyError);
      expect((error as Error).message).to.equal('the database session is read-only');
      expect(await backendPid()).to.not.equal(readOnlyPid);
      expect(await check.check()).to.equal('ok');
    });
  });

  describe('the service', () => {
    const db = useTestDatabase();
    let service: TestService;
    before(async () => {
      service = await startTestService(db().url, { FETCH_INTERVAL_MS: '200' });
    });
    after(async () => {
      await adminQuery(`ALTER DATABASE ${db().name} RESET default_transaction_read_only`);
      await service.stop();
    });

    const message = { to: '+905551111111', content: 'read-only test' };

    it('answers 503 with Retry-After and a 503 health check while read-only, and recovers on its own', async () => {
      expect((await api(service.url, 'POST', '/messages', message)).status).to.equal(201);
      expect((await api(service.url, 'GET', '/health-check')).status).to.equal(200);

      await adminQuery(`ALTER DATABASE ${db().name} SET default_transaction_read_only = on`);
      // Every session from now on is read-only, as behind a proxy moved to a standby.
      await adminQuery(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${db().name}'`);

      const health = await eventually(
        () => api(service.url, 'GET', '/health-check'),
        (answer) => answer.status === 503,
      );
      expect(health.body.status).to.equal('degraded');
      expect(health.body.checks.database).to.equal('down');
      const intake = await eventually(
        () => api(service.url, 'POST', '/messages', message),
        (answer) => answer.status !== 201,
      );
      expect(intake.status, JSON.stringify(intake.body)).to.equal(503);
      expect(intake.body).to.deep.equal({
        error: { code: 'unavailable', message: 'the database is unavailable; retry later' },
      });
      expect(intake.headers.get('retry-after')).to.equal('5');
      expect((await api(service.url, 'POST', '/messages', message)).status, 'still 503').to.equal(503);
      expect((await api(service.url, 'GET', '/health-alive')).status, 'the process stays up').to.equal(200);

      // Writable again; nothing terminates the service's read-only sessions: it drops them itself.
      await adminQuery(`ALTER DATABASE ${db().name} RESET default_transaction_read_only`);
      await eventually(
        () => api(service.url, 'POST', '/messages', message),
        (answer) => answer.status === 201,
      );
      await eventually(
        () => api(service.url, 'GET', '/health-check'),
        (answer) => answer.status === 200,
      );
    });
  });
});
