// LongLivedConnection against a real PostgreSQL behind a TCP forwarder: the
// loss of its session signalled several ways at once (a terminated backend,
// a server that hangs up on every new session, refused connects, a failed
// probe) is repaired by one loop, with at most one connection open or
// opening at any moment and a bounded number of attempts; close() ends it
// all without waiting on a dead route.
import { setTimeout as sleep } from 'node:timers/promises';
import { expect } from 'chai';
import pg from 'pg';
import { LongLivedConnection } from '../../src/db/long-lived-connection.ts';
import { withTimeout } from '../../src/lib/with-timeout.ts';
import { adminQuery, useTestDatabase } from '../support/postgres.ts';
import { eventually } from '../support/service.ts';
import { startTcpForwarder, type TcpForwarder } from '../support/tcp-forwarder.ts';

describe('LongLivedConnection: one reconnect loop per connection', () => {
  const db = useTestDatabase({ migrate: false });
  const applicationName = `llc-test-${process.pid}`;
  const backoff = { firstDelayMs: 20, maxDelayMs: 200 };
  let forwarder: TcpForwarder | undefined;
  let connection: LongLivedConnection | undefined;

  after(async () => {
    await connection?.close();
    await forwarder?.stop();
  });

  async function backends(): Promise<number> {
    const client = new pg.Client({ connectionString: db().url });
    await client.connect();
    try {
      const { rows } = await client.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1',
        [applicationName],
      );
      return rows[0]!.n;
    } finally {
      await client.end();
    }
  }

  /** Most reconnect attempts `elapsedMs` allows with pauses of at least a few ms on average (full jitter). */
  const attemptBound = (elapsedMs: number) => Math.ceil(elapsedMs / 25) + 10;

  it('turns error, end, refused connects and failed probes into one bounded loop and one connection', async () => {
    const target = new URL(db().url);
    forwarder = await startTcpForwarder(target.hostname, Number(target.port || 5432));
    const events = { lost: [] as string[], failed: 0, replaced: 0 };
    /** The probe of this client fails (the others answer). */
    let doomed: pg.Client | undefined;
    // Every client created, and the most not yet destroyed at the moment a new one is created (that one included).
    const created: pg.Client[] = [];
    let peakOpen = 0;
    const socketOf = (client: pg.Client) =>
      (client as unknown as { connection: { stream: { destroyed: boolean } } }).connection.stream;
    connection = new LongLivedConnection({
      create: () => {
        peakOpen = Math.max(peakOpen, created.filter((earlier) => !socketOf(earlier).destroyed).length + 1);
        const client = new pg.Client({
          host: '127.0.0.1',
          port: forwarder!.port,
          user: decodeURIComponent(target.username) || 'postgres',
          password: decodeURIComponent(target.password) || undefined,
          database: target.pathname.slice(1),
          application_name: applicationName,
          connectionTimeoutMillis: 1_000,
        });
        created.push(client);
        return client;
      },
      setUp: async (client) => {
        await client.query('LISTEN llc_test');
      },
      probe: async (client) => {
        if (client === doomed) throw new Error('probe refused by the test');
        await client.query('LISTEN llc_test');
      },
      probeIntervalMs: 100,
      probeTimeoutMs: 500,
      backoff,
      onLost: (reason) => events.lost.push(reason),
      onAttemptFailed: () => {
        events.failed += 1;
      },
      onReplaced: () => {
        events.replaced += 1;
      },
    });
    await connection.open();
    expect(await backends()).to.equal(1);

    // Terminated backend (error 57P01 + end) and a server hanging up on every new session, at once.
    const outageStarted = Date.now();
    await Promise.all([
      adminQuery(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '${applicationName}'`,
      ),
      forwarder.hangUp(),
    ]);
    await eventually(
      async () => events.failed,
      (failed) => failed >= 5,
    );
    // Then refused connections.
    await forwarder.close();
    const failedBeforeRefusal = events.failed;
    await eventually(
      async () => events.failed,
      (failed) => failed >= failedBeforeRefusal + 3,
    );
    await forwarder.open();
    await eventually(
      async () => events.replaced,
      (replaced) => replaced === 1,
    );
    const outageMs = Date.now() - outageStarted;
    expect(events.lost, 'one loss, however many signals announced it').to.have.length(1);
    expect(peakOpen, 'clients open or opening at once through the outage').to.equal(1);
    expect(created.length, 'one client per attempt').to.equal(events.failed + 2);
    expect(events.failed + 1, `attempts in ${outageMs} ms`).to.be.at.most(attemptBound(outageMs));
    expect(connection.client).to.not.equal(undefined);
    expect(await backends()).to.equal(1);

    // A failed probe and a terminated backend of the same client at once: one loss, one replacement, one connection.
    doomed = connection.client!;
    const doomedPid = (doomed as unknown as { processID: number }).processID;
    await adminQuery(`SELECT pg_terminate_backend(${doomedPid})`);
    await eventually(
      async () => events.replaced,
      (replaced) => replaced === 2,
    );
    expect(events.lost).to.have.length(2);
    expect(peakOpen).to.equal(1);
    expect(await backends()).to.equal(1);
  });

  it('closes at once on a dead route and never reconnects afterwards', async () => {
    // The connection from the test above is up; a black hole drops it and swallows every new attempt.
    await forwarder!.blackHole();
    await eventually(
      async () => forwarder!.current,
      (current) => current === 1, // the loop's attempt, waiting on a server that never answers
    );
    await withTimeout(connection!.close(), 2_000);
    expect(connection!.client).to.equal(undefined);
    const acceptedAtClose = forwarder!.accepted;
    await eventually(
      async () => forwarder!.current,
      (current) => current === 0,
    );
    // Absence of a new attempt: wait two of the longest pauses the loop could take.
    await sleep(2 * backoff.maxDelayMs);
    expect(forwarder!.accepted, 'attempts after close()').to.equal(acceptedAtClose);
    expect(await backends()).to.equal(0);
  });
});
