// databaseErrorKind on the errors node-postgres really raises: a refused
// connection, a pool checkout timeout against a dead route, a terminated
// session, a dropped database, data errors and a unique violation.
import { expect } from 'chai';
import pg from 'pg';
import { databaseErrorKind } from '../../src/db/errors.ts';
import { testServer, useTestDatabase } from '../support/postgres.ts';
import { eventually } from '../support/service.ts';
import { startTcpForwarder } from '../support/tcp-forwarder.ts';

describe('database error kinds from real node-postgres errors', () => {
  const db = useTestDatabase();
  const kindOf = databaseErrorKind;

  async function errorOf(action: () => Promise<unknown>): Promise<unknown> {
    try {
      await action();
    } catch (error) {
      return error;
    }
    throw new Error('expected an error');
  }

  it('calls refused connections, pool checkout timeouts and terminated sessions unavailable', async () => {
    const forwarder = await startTcpForwarder('127.0.0.1', 1);
    const refusedPort = forwarder.port;
    await forwarder.stop();
    const refused = new pg.Pool({
      host: '127.0.0.1',
      port: refusedPort,
      user: 'postgres',
      connectionTimeoutMillis: 2_000,
    });
    const refusedError = await errorOf(() => refused.query('SELECT 1'));
    expect((refusedError as { code?: string }).code).to.equal('ECONNREFUSED');
    expect(kindOf(refusedError)).to.equal('unavailable');
    await refused.end();

    const hole = await startTcpForwarder('127.0.0.1', 1);
    await hole.blackHole();
    const slow = new pg.Pool({ host: '127.0.0.1', port: hole.port, user: 'postgres', connectionTimeoutMillis: 300 });
    const timeoutError = await errorOf(() => slow.query('SELECT 1'));
    expect(String((timeoutError as Error).message)).to.match(/timeout|terminated/i);
    expect(kindOf(timeoutError)).to.equal('unavailable');
    await slow.end().catch(() => {});
    await hole.stop();

    const victim = new pg.Client({ connectionString: db().url });
    victim.on('error', () => {});
    await victim.connect();
    const pid = (await victim.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    const running = errorOf(() => victim.query('SELECT pg_sleep(30)'));
    // Terminated while the query runs (not before it arrived): wait until the server is in it.
    await eventually(
      async () =>
        (await db().pool.query("SELECT state = 'active' AS running FROM pg_stat_activity WHERE pid = $1", [pid]))
          .rows[0]?.running,
      (running) => running === true,
    );
    await db().pool.query('SELECT pg_terminate_backend($1)', [pid]);
    const terminated = await running;
    expect((terminated as { code?: string }).code).to.equal('57P01');
    expect(kindOf(terminated)).to.equal('unavailable');
    const afterwards = await errorOf(() => victim.query('SELECT 1'));
    expect(kindOf(afterwards), String((afterwards as Error).message)).to.equal('unavailable');
    await victim.end().catch(() => {});

    const missing = new URL((await testServer()).adminUrl);
    missing.pathname = '/jm_no_such_database';
    const missingPool = new pg.Pool({ connectionString: missing.toString() });
    const missingError = await errorOf(() => missingPool.query('SELECT 1'));
    expect((missingError as { code?: string }).code).to.equal('3D000');
    expect(kindOf(missingError)).to.equal('unavailable');
    await missingPool.end();
  });

  it('calls data errors invalid input and unique violations conflicts', async () => {
    const badTimestamp = await errorOf(() => db().pool.query(`SELECT '2025-13-01 00:00:00+00'::timestamptz`));
    expect((badTimestamp as { code?: string }).code).to.equal('22008');
    expect(kindOf(badTimestamp)).to.equal('invalid_input');
    const badNumber = await errorOf(() => db().pool.query(`SELECT 'Infinity'::integer`));
    expect(kindOf(badNumber)).to.equal('invalid_input');
    const nul = await errorOf(() => db().pool.query('SELECT $1::text', ['a\u0000b']));
    expect(kindOf(nul)).to.equal('invalid_input');
    const duplicate = await errorOf(() =>
      db().pool.query(
        `INSERT INTO jobs (name, handler, interval_seconds, batch_size, status) SELECT name, handler, interval_seconds, batch_size, status FROM jobs LIMIT 1`,
      ),
    );
    expect((duplicate as { code?: string }).code).to.equal('23505');
    expect(kindOf(duplicate)).to.equal('conflict');
    const syntax = await errorOf(() => db().pool.query('SELEC 1'));
    expect(kindOf(syntax), 'a bug stays a 500').to.equal(undefined);
  });
});
