import { setTimeout as sleep } from 'node:timers/promises';
import { expect } from 'chai';
import pg from 'pg';
import { connectionBudget } from '../../src/db/database.ts';
import { BackendSampler } from './support/backend-sampler.ts';
import { PgCluster } from './support/cluster.ts';
import { Haproxy } from './support/haproxy.ts';
import { http, printTable, type ResultRow, results, Scenario, type ServicePod, until } from './support/kit.ts';
import { Receiver } from './support/receiver.ts';

/**
 * Failover with real streaming replication: a primary with a synchronous
 * standby (`synchronous_standby_names`, the standby made by
 * `pg_basebackup -R`), Debian's HAProxy in TCP mode as the endpoint the pods
 * use, two real pods (src/main.ts) with FETCH_INTERVAL_MS=1000 and a flowing
 * backlog (2,000 messages, a send-messages job every second, batch 200). Each scenario builds
 * its own pair of clusters.
 *
 * - The primary SIGKILLed and gone 5 s, then 40 s (longer than every
 *   reconnect loop's longest pause) before the standby is promoted and the
 *   endpoint switched: the pods resume within 30 s of the switch without a
 *   restart, every accepted message is delivered, a resend only with the same
 *   Idempotency-Key; a pod SIGTERMed during the outage exits within
 *   SHUTDOWN_TIMEOUT_MS + 2 s.
 * - The endpoint at the read-only standby for 30 s, then back: 503s on
 *   intake and a 503 health check meanwhile, recovery on its own.
 * Throughout, each pod's backends in pg_stat_activity (grouped by
 * application_name, on both servers) stay within its connection budget.
 */
describe('fault injection: failover to a promoted standby', function () {
  this.timeout(240_000);
  const receiver = new Receiver();
  const firstRow = results.length;
  const phases: string[] = [];
  let stand: Stand | undefined;

  const shutdownTimeoutMs = 5_000;
  /** Every pool and client of a pod (connectionBudget: the main pool, pg-boss's pool, the fetcher's LISTEN client). */
  const poolMax = 10; // DATABASE_POOL_MAX's default: the pods leave it unset
  const budget = connectionBudget(poolMax);

  before(() => receiver.start());
  afterEach(async function () {
    if (this.currentTest?.state === 'failed' && stand) {
      for (const pod of stand.s.pods) console.log(`--- ${pod.name} (last lines)\n${pod.tail()}`);
    }
    await stand?.tearDown();
    stand = undefined;
  });
  after(async () => {
    await receiver.close();
    const rows = results.slice(firstRow);
    if (rows.length > 0) console.log(`\nfailover scenarios\n${printTable(rows)}\n${phases.join('\n')}\n`);
  });

  it('primary gone 5 s before promotion: both pods resume within 30 s of the switch, nothing lost', async () => {
    stand = await Stand.build(receiver, 'failover-5s primary gone 5 s before promotion');
    const { s } = stand;
    const [a] = await stand.pods(['a', 'b'], env(stand));
    await flowingBacklog(s, a!);
    await promoteAfter(stand, 5_000);
    await finishFailover(stand, phases, budget);
  });

  it('primary gone 40 s before promotion, a pod SIGTERMed meanwhile: it exits in time, the other resumes', async () => {
    stand = await Stand.build(receiver, 'failover-40s primary gone 40 s before promotion');
    const { s } = stand;
    const [a, b] = await stand.pods(['a', 'b'], env(stand));
    await flowingBacklog(s, a!);
    await promoteAfter(stand, 40_000, async () => {
      // Ten seconds into the outage: SIGTERM one pod; it must not wait on the dead database.
      await sleep(10_000);
      const sentAt = Date.now();
      const exit = await b!.stop('SIGTERM', 30_000);
      const tookMs = exit.at - sentAt;
      phases.push(`${s.name}: SIGTERM during the outage exited in ${(tookMs / 1000).toFixed(1)} s (code ${exit.code})`);
      // Exit code 1 when a step could not finish against the dead database (its leases expire instead).
      expect(exit.code, b!.tail()).to.be.oneOf([0, 1]);
      expect(tookMs, 'exit within SHUTDOWN_TIMEOUT_MS + 2 s').to.be.at.most(shutdownTimeoutMs + 2_000);
    });
    expect(b!.alive).to.equal(false);
    await finishFailover(stand, phases, budget);
  });

  it('endpoint at the read-only standby for 30 s: 503 on intake and health meanwhile, recovery on its own', async () => {
    stand = await Stand.build(receiver, 'read-only-30s endpoint at the standby for 30 s');
    const { s, haproxy } = stand;
    const pods = await stand.pods(['a', 'b'], env(stand));
    await flowingBacklog(s, pods[0]!);
    // A proxy that moves cuts the sessions of the server it leaves; it keeps those of the one it comes back from.
    await haproxy.pointAt('standby', { dropSessions: true });
    const movedAt = Date.now();
    const probes: Array<{ at: number; health: number; intake: number }> = [];
    while (Date.now() - movedAt < 30_000) {
      for (const pod of pods) {
        const [health, intake] = await Promise.all([
          http(pod.url, 'GET', '/health-check'),
          http(pod.url, 'POST', '/messages', { to: '+905551111111', content: 'while read-only' }),
        ]);
        if (intake.status === 201) s.ids.push(intake.body.id);
        probes.push({ at: Date.now() - movedAt, health: health.status, intake: intake.status });
      }
      await sleep(500);
    }
    await haproxy.pointAt('primary');
    s.faultEnded();
    const settled = probes.filter((probe) => probe.at >= 5_000);
    const health503 = settled.filter((probe) => probe.health === 503).length;
    const intakeStatuses = [...new Set(probes.map((probe) => probe.intake))].sort();
    phases.push(
      `${s.name}: health 503 on ${health503} of ${settled.length} probes after the first 5 s; ` +
        `first 503 after ${((probes.find((probe) => probe.health === 503)?.at ?? Number.NaN) / 1000).toFixed(1)} s; ` +
        `intake statuses ${intakeStatuses.join(', ')}`,
    );
    expect(health503, 'health 503 while the endpoint is at the standby').to.equal(settled.length);
    expect(intakeStatuses, 'intake while read-only (never 201, never a 500)').to.deep.equal([503]);
    await until(
      'both pods healthy again',
      async () =>
        (await Promise.all(pods.map((pod) => http(pod.url, 'GET', '/health-check')))).every((h) => h.status === 200),
      30_000,
    );
    const after = await http(pods[0]!.url, 'POST', '/messages', { to: '+905551111111', content: 'after' });
    expect(after.status, JSON.stringify(after.body)).to.equal(201);
    s.ids.push(after.body.id);
    await finishFailover(stand, phases, budget, { resendsAllowed: false });
  });
});

/** A primary, its synchronous standby, HAProxy in front, the pods' scenario, and a sampler of their backends. */
class Stand {
  readonly primary: PgCluster;
  readonly standby: PgCluster;
  readonly haproxy: Haproxy;
  readonly s: Scenario;
  readonly sampler: BackendSampler;
  switchedAt = 0;

  private constructor(primary: PgCluster, standby: PgCluster, haproxy: Haproxy, s: Scenario) {
    this.primary = primary;
    this.standby = standby;
    this.haproxy = haproxy;
    this.s = s;
    this.sampler = new BackendSampler([primary, standby]);
  }

  static async build(receiver: Receiver, name: string): Promise<Stand> {
    const primary = await PgCluster.create({}, ['pg_basebackup']);
    await primary.query('CREATE DATABASE failover');
    const standby = await PgCluster.standbyOf(primary, 'standby');
    // Only the primary waits for the standby (set after the base backup, so the standby does not inherit it).
    await primary.query("ALTER SYSTEM SET synchronous_standby_names = 'standby'");
    await primary.query('SELECT pg_reload_conf()');
    await until('the standby replicates synchronously', async () => {
      const rows = await primary.query<{ sync_state: string }>('SELECT sync_state FROM pg_stat_replication');
      return rows.some((row) => row.sync_state === 'sync');
    });
    const haproxy = await Haproxy.start({ primary: primary.port, standby: standby.port }, 'primary');
    const s = new Scenario({ cluster: primary, receiver, toxiproxy: undefined }, name);
    s.database = 'failover';
    // Wherever the endpoint points now (the pods' view).
    s.query = async <T>(sql: string) => {
      const client = new pg.Client({ connectionString: endpointUrl(haproxy), connectionTimeoutMillis: 5_000 });
      client.on('error', () => {});
      await client.connect();
      try {
        return (await client.query(sql)).rows as T[];
      } finally {
        await client.end().catch(() => {});
      }
    };
    const stand = new Stand(primary, standby, haproxy, s);
    stand.sampler.start();
    return stand;
  }

  async pods(names: string[], env: Record<string, string>): Promise<ServicePod[]> {
    const pods = await Promise.all(names.map((name) => this.s.pod(name, env)));
    await this.s.quietDefaultJob(pods[0]!);
    return pods;
  }

  async tearDown(): Promise<void> {
    await this.sampler.stop();
    await this.s.cleanUp().catch(() => {});
    await this.haproxy.stop().catch(() => {});
    await this.primary.destroy().catch(() => {});
    await this.standby.destroy().catch(() => {});
  }
}

function endpointUrl(haproxy: Haproxy): string {
  return `postgres://postgres@127.0.0.1:${haproxy.port}/failover`;
}

function env(stand: Stand): Record<string, string> {
  return {
    DATABASE_URL: endpointUrl(stand.haproxy),
    WEBHOOK_URL: stand.s.rig.receiver.url,
    FETCH_INTERVAL_MS: '1000',
    WORKER_COUNT: '4',
    SHUTDOWN_TIMEOUT_MS: '5000',
  };
}

/** 2,000 messages, a sender every second with batch 200, flowing: resolves once 300 are delivered. */
async function flowingBacklog(s: Scenario, pod: ServicePod): Promise<void> {
  await s.seed(pod, 2_000);
  await s.senders(pod, 1, 200, 1);
  await s.waitDelivered(300, 60_000);
}

/**
 * SIGKILLs the primary, waits `goneMs` (running `during` meanwhile), promotes
 * the standby (`pg_promote()`, what `pg_ctl promote` asks for) and points the
 * endpoint at it; then waits for the pods to deliver again (30 s at most).
 */
async function promoteAfter(stand: Stand, goneMs: number, during?: () => Promise<void>): Promise<void> {
  stand.primary.kill();
  const killedAt = Date.now();
  await during?.();
  await sleep(Math.max(0, goneMs - (Date.now() - killedAt)));
  await stand.standby.query('SELECT pg_promote(true, 60)');
  await stand.haproxy.pointAt('standby');
  stand.switchedAt = Date.now();
  stand.s.faultEnded();
  const { receiver } = stand.s.rig;
  await until('deliveries resume', () => receiver.firstAcceptedAfter(stand.switchedAt) !== undefined, 30_000);
}

/** The checks of every scenario (kit's finish) plus the connection budget, and the phases measured. */
async function finishFailover(
  stand: Stand,
  phases: string[],
  budget: number,
  { resendsAllowed = true } = {},
): Promise<void> {
  const { s, sampler } = stand;
  // A delivery whose outcome could not be written before its lease ran out is sent again, with the same key.
  s.resendsAllowed = resendsAllowed;
  await s.finish({ allSentWithinMs: 120_000 });
  const drainedAt = Date.now();
  const row = results.at(-1) as ResultRow;
  const peaks = sampler.peaks(s.pods.map((pod) => pod.name));
  const listener = Object.fromEntries(
    s.pods.map((pod) => [
      pod.name,
      {
        lost: pod.logged(/job change listener lost/).length,
        attempts: pod.logged(/job change listener: reconnect failed/).length,
      },
    ]),
  );
  row.note = `drained ${((drainedAt - (s.faultEndedAt ?? drainedAt)) / 1000).toFixed(1)} s after the switch`;
  phases.push(
    `${s.name}: resumed ${row.recoverySeconds?.toFixed(1)} s after the switch; backlog ${row.note.slice(8)}; ` +
      `resends ${row.resends}; peak backends per pod ${JSON.stringify(peaks)} (budget ${budget}, ${sampler.samples} samples); ` +
      `LISTEN connection losses and failed reconnects ${JSON.stringify(listener)}`,
  );
  // One loss per fault, repaired by one loop: never a loss per failed attempt.
  for (const [pod, { lost }] of Object.entries(listener)) expect(lost, `${pod}: listener losses`).to.be.at.most(1);
  for (const [pod, peak] of Object.entries(peaks)) expect(peak, `${pod}: backends`).to.be.at.most(budget);
}
