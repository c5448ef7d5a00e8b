import { setTimeout as sleep } from 'node:timers/promises';
import { expect } from 'chai';
import pg from 'pg';
import { isSession } from '../../src/db/database.ts';
import { createPool, defaultConnectionBounds } from '../../src/db/pool.ts';
import { withTransaction } from '../../src/db/transaction.ts';
import { faultSuite, http, type Scenario, type ServicePod } from './support/kit.ts';
import { PgBouncer } from './support/pgbouncer.ts';

/**
 * DATABASE_URL at a real PgBouncer in transaction pooling mode with its
 * default settings (no ignore_startup_parameters), the way teams run it:
 * start-up and migrations, scheduling, dispatch, pg-boss and intake
 * idempotency all work through it; the session settings and the statement
 * timeout hold per transaction whichever server connection serves it; LISTEN
 * goes to DATABASE_DIRECT_URL, and without it the scheduler polls.
 */
describe('fault injection: PgBouncer in transaction mode', function () {
  this.timeout(180_000);
  const { rig, begin } = faultSuite();
  let bouncer: PgBouncer;

  before(async function () {
    if (!PgBouncer.available()) {
      console.log('PgBouncer scenarios skipped: /usr/sbin/pgbouncer not found (apt-get install pgbouncer)');
      this.skip();
    }
    bouncer = await PgBouncer.start(rig.cluster.port);
  });
  after(() => bouncer?.stop());

  /** A scenario database whose defaults are not ISO dates in UTC: the service must pin its own. */
  async function otherDefaults(s: Scenario): Promise<void> {
    await rig.cluster.query(
      `ALTER DATABASE ${s.database} SET DateStyle = 'SQL, DMY'; ` +
        `ALTER DATABASE ${s.database} SET TimeZone = 'America/New_York'; ` +
        `ALTER DATABASE ${s.database} SET IntervalStyle = 'sql_standard'`,
    );
  }

  /** runCount of job `name` now and 10 s later (the poll an operator's check uses). */
  async function runsIn10s(pod: ServicePod, name: string): Promise<number> {
    const before = (await http(pod.url, 'GET', `/jobs/${name}`)).body.runCount as number;
    await sleep(10_000);
    const after = (await http(pod.url, 'GET', `/jobs/${name}`)).body.runCount as number;
    return after - before;
  }

  it('two pods through PgBouncer, LISTEN direct: 2,000 delivered once, a 1 s job on pace, idempotent intake, health 200', async () => {
    const s = await begin('PgBouncer: 2 pods, DATABASE_DIRECT_URL');
    await otherDefaults(s);
    rig.receiver.latencyMs = 5;
    const env = s.env({ DATABASE_URL: bouncer.url(s.database), DATABASE_DIRECT_URL: s.databaseUrl() });
    const [a, b] = await Promise.all([s.pod('a', { ...env, FETCH_INTERVAL_MS: '1000' }), s.pod('b', env)]);
    await s.quietDefaultJob(a);
    for (const pod of [a, b])
      expect(
        pod.logged(/^DATABASE_URL is a transaction pooler.*the scheduler LISTENs on DATABASE_DIRECT_URL$/),
        pod.name,
      ).to.have.length(1);

    const created = await http(a.url, 'POST', '/jobs', {
      name: 'pace',
      handler: 'send-messages',
      intervalSeconds: 1,
      batchSize: 1,
      active: true,
    });
    expect(created.status, JSON.stringify(created.body)).to.equal(201);
    await s.seed(b, 2_000);
    await s.senders(a, 2, 200, 1);
    const paced = await runsIn10s(b, 'pace');
    expect(paced, 'runs of the 1 s job in 10 s').to.be.within(8, 11);

    // Intake idempotency through PgBouncer: the same key answers with the same message.
    const keyed = async () =>
      (
        await fetch(`${b.url}/messages`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'idempotency-key': 'pgbouncer-once' },
          body: JSON.stringify({ to: '+905551111111', content: 'once through PgBouncer' }),
        })
      ).json() as Promise<{ id: string; createdAt: string }>;
    const first = await keyed();
    const again = await keyed();
    expect(again.id).to.equal(first.id);
    expect(first.createdAt, 'an ISO time in UTC, whatever the database default').to.match(/^\d{4}-\d\d-\d\dT.*Z$/);
    s.ids.push(first.id);

    s.note = `1 s job: ${paced} runs in 10 s`;
    await s.finish({ allSentWithinMs: 120_000 });
  });

  it('without DATABASE_DIRECT_URL: a warning, no LISTEN, and the 1 s job still runs by polling', async () => {
    const s = await begin('PgBouncer: no DATABASE_DIRECT_URL (polling)');
    const pod = await s.pod('a', s.env({ DATABASE_URL: bouncer.url(s.database), FETCH_INTERVAL_MS: '1000' }));
    await s.quietDefaultJob(pod);
    expect(pod.logged(/^DATABASE_URL is a transaction pooler.*at its next poll \(FETCH_INTERVAL_MS\)$/)).to.have.length(
      1,
    );
    await s.seed(pod, 20);
    const created = await http(pod.url, 'POST', '/jobs', {
      name: 'pace',
      handler: 'send-messages',
      intervalSeconds: 1,
      batchSize: 2,
      active: true,
    });
    expect(created.status, JSON.stringify(created.body)).to.equal(201);
    const paced = await runsIn10s(pod, 'pace');
    expect(paced, 'runs of the 1 s job in 10 s').to.be.within(8, 11);
    s.note = `1 s job: ${paced} runs in 10 s`;
    await s.finish({ allSentWithinMs: 60_000 });
  });

  it("the service's pool through PgBouncer: ISO/UTC and the timeouts on every statement, a slow one cancelled, nothing left behind", async () => {
    const s = await begin('PgBouncer: settings and timeouts per transaction');
    await otherDefaults(s);
    const plain = async (sql: string) => {
      const client = new pg.Client({ connectionString: bouncer.url(s.database) });
      await client.connect();
      try {
        return (await client.query(sql)).rows[0];
      } finally {
        await client.end();
      }
    };
    expect(
      await plain("SELECT current_setting('DateStyle') AS d, current_setting('TimeZone') AS t"),
      'a plain client through PgBouncer sees the database defaults',
    ).to.deep.equal({ d: 'SQL, DMY', t: 'America/New_York' });
    // The start-up session check tells the two apart.
    expect(await isSession(bouncer.url(s.database), defaultConnectionBounds), 'PgBouncer').to.equal(false);
    expect(await isSession(s.databaseUrl(), defaultConnectionBounds), 'PostgreSQL').to.equal(true);

    // The service's own pool module, as every pod builds it, with a 500 ms statement timeout.
    const pool = createPool({
      connectionString: bouncer.url(s.database),
      max: 4,
      bounds: { connectTimeoutMs: 5_000, statementTimeoutMs: 500 },
      transactionPooler: true,
    });
    try {
      const settings =
        "SELECT pg_backend_pid() AS pid, current_setting('DateStyle') AS d, current_setting('TimeZone') AS t, " +
        "current_setting('IntervalStyle') AS i, current_setting('statement_timeout') AS st, " +
        "current_setting('idle_in_transaction_session_timeout') AS it, pg_sleep(0.02)";
      const seen = await Promise.all(
        Array.from({ length: 24 }, (_, index) =>
          index % 2 === 0
            ? pool.query(settings).then((result) => result.rows[0])
            : withTransaction(pool, async (client) => (await client.query(settings)).rows[0]),
        ),
      );
      expect(new Set(seen.map((row) => row.pid)).size, 'server connections used').to.be.greaterThan(1);
      const distinct = new Set(seen.map(({ d, t, i, st, it }) => JSON.stringify({ d, t, i, st, it })));
      expect([...distinct].map((text) => JSON.parse(text))).to.deep.equal([
        { d: 'ISO, MDY', t: 'UTC', i: 'postgres', st: '500ms', it: '1min' },
      ]);

      const alone = await pool.query('SELECT pg_sleep(3)').catch((error: unknown) => error);
      expect(alone, 'a statement on its own').to.include({ code: '57014' });
      const inTransaction = await withTransaction(pool, (client) => client.query('SELECT pg_sleep(3)')).catch(
        (error: unknown) => error,
      );
      expect(inTransaction, 'a statement in a transaction').to.include({ code: '57014' });
      expect((await pool.query('SELECT 1 AS ok')).rows).to.deep.equal([{ ok: 1 }]);
    } finally {
      await pool.end();
    }
    expect(
      await plain("SELECT current_setting('statement_timeout') AS st, current_setting('IntervalStyle') AS i"),
      'the next client of those server connections gets none of it (SET LOCAL)',
    ).to.deep.equal({ st: '0', i: 'sql_standard' });
  });
});
