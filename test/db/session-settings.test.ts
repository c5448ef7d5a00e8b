import { expect } from 'chai';
import pg from 'pg';
import { adminQuery, useTestDatabase } from '../support/postgres.ts';
import { api, startTestService, type TestService } from '../support/service.ts';

/**
 * A database whose defaults are not ISO dates in UTC (issue 9, fault 7): the
 * service pins DateStyle and TimeZone on every connection of its pool and
 * pg-boss's, and the timeouts and IntervalStyle in every transaction (the
 * way PgBouncer keeps them too: test/faults/pgbouncer.fault.ts), so nothing
 * changes for it.
 */
describe('session settings pinned on every connection', function () {
  this.timeout(60_000);
  const db = useTestDatabase();
  let service: TestService;
  before(async () => {
    await adminQuery(
      `ALTER DATABASE ${db().name} SET DateStyle = 'SQL, DMY'; ` +
        `ALTER DATABASE ${db().name} SET TimeZone = 'America/New_York'; ` +
        `ALTER DATABASE ${db().name} SET IntervalStyle = 'sql_standard'`,
    );
    service = await startTestService(db().url, {}, { startEngine: false });
  });
  after(() => service?.stop());

  it('the database really has other defaults (a plain connection sees them)', async () => {
    const client = new pg.Client({ connectionString: db().url });
    await client.connect();
    try {
      const { rows } = await client.query('SHOW DateStyle');
      expect(rows[0].DateStyle).to.equal('SQL, DMY');
    } finally {
      await client.end();
    }
  });

  it('the service pool sees ISO, UTC, postgres intervals and its statement timeouts', async () => {
    const { rows } = await service.database.pool.query(
      "SELECT current_setting('DateStyle') AS d, current_setting('TimeZone') AS t, current_setting('IntervalStyle') AS i, " +
        "current_setting('statement_timeout') AS st, current_setting('idle_in_transaction_session_timeout') AS it",
    );
    expect(rows[0]).to.deep.equal({ d: 'ISO, MDY', t: 'UTC', i: 'postgres', st: '10s', it: '1min' });
  });

  it('takes a message (201, stored once), reads it back, schedules and sends it', async () => {
    const created = await api(service.url, 'POST', '/messages', { to: '+905551111111', content: 'hello' });
    expect(created.status).to.equal(201);
    expect(created.body.createdAt).to.match(/^\d{4}-\d\d-\d\dT/);
    const read = await api(service.url, 'GET', `/messages/${created.body.id}`);
    expect(read.status).to.equal(200);
    expect(read.body.createdAt).to.equal(created.body.createdAt);
    expect((await db().pool.query('SELECT count(*)::int AS n FROM messages')).rows[0].n).to.equal(1);
    // One scheduling round through pg-boss and the send-messages handler (dry run).
    const outcomes = await service.engine.runOnce();
    expect(outcomes).to.deep.equal(['ok']);
    const sent = await api(service.url, 'GET', '/messages/sent');
    expect(sent.status).to.equal(200);
    expect(sent.body.items.map((item: { id: string }) => item.id)).to.deep.equal([created.body.id]);
    const jobs = await api(service.url, 'GET', '/jobs');
    expect(jobs.status).to.equal(200);
    expect(Date.parse(jobs.body.jobs[0].lastTriggeredAt)).to.be.closeTo(Date.now(), 60_000);
  });
});
