import { setTimeout as sleep } from 'node:timers/promises';
import { expect } from 'chai';
import { startPod, stopAll, type TestProcess } from '../../support/processes.ts';
import { PgCluster } from './cluster.ts';
import { Receiver } from './receiver.ts';
import { type RunningToxiproxy, startToxiproxy } from './toxiproxy.ts';

/** A service process of the fault suite (fault-pod.ts: src/main.ts, its clock maybe shifted). */
export type ServicePod = TestProcess;

const faultPodEntry = new URL('./fault-pod.ts', import.meta.url).pathname;

/**
 * Starts a fault pod in its own process group (killGroup() also reaches an
 * embedded PostgreSQL it started) with PATH and HOME only plus `env`; resolves
 * once it serves HTTP.
 */
export function startFaultPod(name: string, env: Record<string, string>, timeoutMs = 60_000): Promise<ServicePod> {
  return startPod(
    name,
    { HOME: process.env.HOME ?? '/root', ...env },
    { entry: faultPodEntry, group: true, timeoutMs },
  );
}

/** Resolves once `probe` is true (checked every 50 ms); rejects after `timeoutMs`. */
export async function until(what: string, probe: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(50);
  }
}

/** JSON over HTTP with a timeout; never throws (status 0 when there was no answer). */
export async function http(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  timeoutMs = 5_000,
): Promise<{ status: number; body: any; headers: Headers }> {
  try {
    const response = await fetch(`${base}${path}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // not JSON
    }
    return { status: response.status, body: parsed, headers: response.headers };
  } catch {
    return { status: 0, body: undefined, headers: new Headers() };
  }
}

/** What every scenario shares: the suite's PostgreSQL, webhook receiver and (maybe) Toxiproxy. */
export interface FaultRig {
  cluster: PgCluster;
  receiver: Receiver;
  toxiproxy: RunningToxiproxy | undefined;
  /** Toxiproxy's listen port in front of PostgreSQL and in front of the receiver (when Toxiproxy runs). */
  pgProxyPort?: number;
  webhookProxyPort?: number;
}

export interface ResultRow {
  scenario: string;
  messages: number;
  delivered: number;
  resends: number;
  lost: number;
  /** Seconds from the end of the fault until work was flowing again (deliveries or health), if measured. */
  recoverySeconds: number | undefined;
  outcome: 'passed' | 'failed' | 'skipped';
  note?: string;
}

export const results: ResultRow[] = [];

let databases = 0;

/**
 * One scenario: its own database on the suite's cluster, its pods, its
 * messages; `finish()` checks what every scenario promises and records the
 * table row.
 */
export class Scenario {
  readonly name: string;
  readonly rig: FaultRig;
  readonly pods: ServicePod[] = [];
  readonly ids: string[] = [];
  database = '';
  /** A resend (same key) is allowed only where a pod was SIGKILLed. */
  resendsAllowed = false;
  faultEndedAt: number | undefined;
  recoveryAt: number | undefined;
  note: string | undefined;
  /** Where the scenario's messages live; the suite's cluster unless replaced (embedded mode). */
  query: <T>(sql: string) => Promise<T[]> = (sql) => this.rig.cluster.query(sql, [], this.database);

  constructor(rig: FaultRig, name: string) {
    this.name = name;
    this.rig = rig;
    rig.receiver.reset();
  }

  async createDatabase(): Promise<void> {
    databases += 1;
    this.database = `faults_${process.pid}_${databases}`;
    await this.rig.cluster.query(`CREATE DATABASE ${this.database}`);
  }

  /** The database URL a pod uses: direct, or through Toxiproxy. */
  databaseUrl(viaProxy = false): string {
    const port = viaProxy ? this.rig.pgProxyPort : this.rig.cluster.port;
    return `postgres://postgres@127.0.0.1:${port}/${this.database}`;
  }

  webhookUrl(viaProxy = false): string {
    return viaProxy ? `http://127.0.0.1:${this.rig.webhookProxyPort}/webhook` : this.rig.receiver.url;
  }

  /** Environment of a normal pod of this scenario. */
  env(extra: Record<string, string> = {}, proxies: { db?: boolean; webhook?: boolean } = {}): Record<string, string> {
    return {
      DATABASE_URL: this.databaseUrl(proxies.db),
      WEBHOOK_URL: this.webhookUrl(proxies.webhook),
      ...extra,
    };
  }

  async pod(name: string, env: Record<string, string>): Promise<ServicePod> {
    const pod = await startFaultPod(`${this.name.split(' ')[0]}-${name}`, env);
    this.pods.push(pod);
    return pod;
  }

  livePods(): ServicePod[] {
    return this.pods.filter((pod) => pod.alive);
  }

  /** Stops the seeded every-2-minutes job so only the scenario's own senders run. */
  async quietDefaultJob(pod: ServicePod): Promise<void> {
    expect((await http(pod.url, 'PUT', '/jobs/stop', { name: 'message-sender' })).status).to.equal(200);
  }

  async seed(pod: ServicePod, count: number): Promise<string[]> {
    for (let offset = 0; offset < count; offset += 1000) {
      const size = Math.min(1000, count - offset);
      const messages = Array.from({ length: size }, (_, index) => ({
        to: '+905551111111',
        content: `${this.name.slice(0, 40)} #${offset + index}`,
      }));
      const answer = await http(pod.url, 'POST', '/messages/batch', { messages }, 30_000);
      expect(answer.status, JSON.stringify(answer.body)).to.equal(201);
      this.ids.push(...answer.body.items.map((item: { id: string }) => item.id));
    }
    return this.ids;
  }

  /** Creates `count` send-messages jobs (every `intervalSeconds`, `batchSize` each), active at once. */
  async senders(pod: ServicePod, count: number, batchSize: number, intervalSeconds = 1): Promise<void> {
    for (let index = 0; index < count; index += 1) {
      const answer = await http(pod.url, 'POST', '/jobs', {
        name: `sender-${index}`,
        handler: 'send-messages',
        intervalSeconds,
        batchSize,
        active: true,
      });
      expect(answer.status, JSON.stringify(answer.body)).to.equal(201);
    }
  }

  async statusCounts(): Promise<Record<string, number>> {
    const rows = await this.query<{ status: string; n: number }>(
      'SELECT status, count(*)::int AS n FROM messages GROUP BY status',
    );
    return Object.fromEntries(rows.map((row) => [row.status, row.n]));
  }

  /** Waits until the receiver has accepted at least `count` of this scenario's messages. */
  async waitDelivered(count: number, timeoutMs = 60_000): Promise<void> {
    await until(`${count} delivered`, () => this.rig.receiver.accepted >= count, timeoutMs);
  }

  /** Waits until every message is `sent` in the database. */
  async waitAllSent(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const counts = await this.statusCounts().catch(() => ({}) as Record<string, number>);
      if ((counts.sent ?? 0) >= this.ids.length) return;
      if (Date.now() > deadline)
        throw new Error(`not all sent within ${timeoutMs} ms: ${JSON.stringify(counts)} of ${this.ids.length}`);
      await sleep(250);
    }
  }

  /** Marks the end of the fault; recovery is measured from here to the next accepted delivery. */
  faultEnded(): void {
    this.faultEndedAt = Date.now();
  }

  /**
   * The promises every scenario checks at the end: none lost, none stuck,
   * every message delivered once by Idempotency-Key (a resend only where
   * allowed, with a key that is one of ours), processes alive, health 200.
   * Records the table row, then asserts.
   */
  async finish(options: { allSentWithinMs?: number } = {}): Promise<void> {
    if (this.ids.length > 0) await this.waitAllSent(options.allSentWithinMs ?? 90_000);
    const allSentAt = Date.now();
    const receiver = this.rig.receiver;
    const known = new Set(this.ids);
    const rows = await this.query<{ id: string; status: string }>('SELECT id, status FROM messages');
    const stored = new Map(rows.map((row) => [row.id, row.status]));
    const lost = this.ids.filter((id) => !stored.has(id) || !receiver.acceptedCount(id)).length;
    const delivered = this.ids.filter((id) => receiver.acceptedCount(id) > 0).length;
    const resends = this.ids.reduce((sum, id) => sum + Math.max(0, receiver.acceptedCount(id) - 1), 0);
    const stuck = rows.filter((row) => row.status !== 'sent');
    const strangers = receiver.acceptedKeys().filter((key) => !known.has(key));
    if (this.faultEndedAt !== undefined && this.recoveryAt === undefined) {
      this.recoveryAt = receiver.firstAcceptedAfter(this.faultEndedAt) ?? allSentAt;
    }
    const recoverySeconds =
      this.faultEndedAt !== undefined && this.recoveryAt !== undefined
        ? (this.recoveryAt - this.faultEndedAt) / 1000
        : undefined;
    const live = this.livePods();
    const health = await Promise.all(live.map((pod) => waitHealthy(pod)));
    const row: ResultRow = {
      scenario: this.name,
      messages: this.ids.length,
      delivered,
      resends,
      lost,
      recoverySeconds,
      outcome: 'passed',
      note: this.note,
    };
    results.push(row);
    try {
      expect(lost, 'messages lost').to.equal(0);
      expect(
        stuck.map((entry) => entry.status),
        'messages stuck (not sent)',
      ).to.deep.equal([]);
      expect(strangers, 'accepted keys that are not message ids').to.deep.equal([]);
      if (!this.resendsAllowed) expect(resends, 'messages delivered twice').to.equal(0);
      expect(live.length, 'pods alive at the end').to.be.greaterThan(0);
      expect(health, 'health-check status of every pod').to.deep.equal(live.map(() => 200));
    } catch (error) {
      row.outcome = 'failed';
      throw error;
    }
  }

  async cleanUp(): Promise<void> {
    await stopAll(this.pods);
    await this.rig.toxiproxy?.client.reset().catch(() => {});
    if (this.database)
      await this.rig.cluster.query(`DROP DATABASE IF EXISTS ${this.database} WITH (FORCE)`).catch(() => {});
  }
}

/** /health-check until 200 (30 s at most); resolves with the last status. */
export async function waitHealthy(pod: ServicePod, timeoutMs = 30_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { status } = await http(pod.url, 'GET', '/health-check');
    if (status === 200 || Date.now() > deadline) return status;
    await sleep(250);
  }
}

/** Prints the results table (plain text, one row per scenario). */
export function printTable(rows: ResultRow[]): string {
  const header = ['scenario', 'messages', 'delivered', 'resends', 'lost', 'recovery', 'outcome'];
  const body = rows.map((row) => [
    row.scenario + (row.note ? ` (${row.note})` : ''),
    String(row.messages),
    String(row.delivered),
    String(row.resends),
    String(row.lost),
    row.recoverySeconds === undefined ? '-' : `${row.recoverySeconds.toFixed(1)} s`,
    row.outcome,
  ]);
  const widths = header.map((title, column) => Math.max(title.length, ...body.map((line) => line[column]!.length)));
  const format = (line: string[]) =>
    line
      .map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!)))
      .join('  ');
  return [format(header), widths.map((width) => '-'.repeat(width)).join('  '), ...body.map(format)].join('\n');
}

export interface FaultSuite {
  rig: FaultRig;
  /** Starts scenario `name`: its own database on the file's cluster, the receiver reset. */
  begin(name: string): Promise<Scenario>;
  /** Skips the test (with a table row) when Toxiproxy is not installed. */
  skipWithoutProxy(context: Mocha.Context, name: string): void;
  /** Two pods on `env`, the seeded job stopped; resolves with both. */
  twoPods(s: Scenario, env: Record<string, string>): Promise<readonly [ServicePod, ServicePod]>;
}

/**
 * The hooks of one fault file, called inside its describe: one PostgreSQL
 * cluster, one receiver and (when installed) one Toxiproxy for the file's
 * scenarios, each scenario on its own database; after a scenario the cluster
 * is thawed and restarted if it is down, the pods stopped, the database
 * dropped. The file's results table is printed at the end. Files share
 * nothing, so mocha runs them in parallel: two workers take the files in name
 * order, so the files are kept at about the same length (database, delivery,
 * processes, surroundings: 60 to 95 s each on two cores).
 */
export function faultSuite(): FaultSuite {
  const rig = {} as FaultRig;
  let scenario: Scenario | undefined;
  /** This file's first row in `results` (a mocha worker runs several files, one after the other). */
  let firstRow = 0;

  before(async function () {
    this.timeout(120_000);
    firstRow = results.length;
    rig.cluster = await PgCluster.create();
    rig.receiver = await new Receiver().start();
    rig.toxiproxy = await startToxiproxy();
    if (rig.toxiproxy) {
      rig.pgProxyPort = (await rig.toxiproxy.proxy('postgres', `127.0.0.1:${rig.cluster.port}`)).port;
      rig.webhookProxyPort = (await rig.toxiproxy.proxy('webhook', `127.0.0.1:${rig.receiver.port}`)).port;
    }
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed' && scenario) recordFailure(scenario);
    rig.cluster.freeze(false);
    const up = await rig.cluster.query('SELECT 1').then(
      () => true,
      () => false,
    );
    if (!up) await rig.cluster.start().catch(() => {});
    await scenario?.cleanUp();
    scenario = undefined;
  });

  after(async () => {
    await rig.toxiproxy?.stop();
    await rig.receiver?.close();
    await rig.cluster?.destroy();
    const rows = results.slice(firstRow);
    if (rows.length > 0) console.log(`\nfault scenarios\n${printTable(rows)}\n`);
  });

  return {
    rig,
    async begin(name) {
      scenario = new Scenario(rig, name);
      await scenario.createDatabase();
      return scenario;
    },
    skipWithoutProxy(context, name) {
      if (rig.toxiproxy) return;
      console.log(`${name}: skipped, Toxiproxy server not found (${toxiproxyInstall})`);
      results.push({ ...emptyRow(name), outcome: 'skipped', note: 'Toxiproxy not installed' });
      context.skip();
    },
    async twoPods(s, env) {
      const [a, b] = await Promise.all([s.pod('a', env), s.pod('b', env)]);
      await s.quietDefaultJob(a);
      return [a, b] as const;
    },
  };
}

const toxiproxyInstall = 'go install github.com/Shopify/toxiproxy/v2/cmd/server@v2.12.0';

function emptyRow(scenario: string): ResultRow {
  return { scenario, messages: 0, delivered: 0, resends: 0, lost: 0, recoverySeconds: undefined, outcome: 'passed' };
}

/** A failed scenario's table row (unless finish() wrote one) and its pods' last lines. */
function recordFailure(scenario: Scenario): void {
  const { receiver } = scenario.rig;
  if (!results.some((row) => row.scenario === scenario.name)) {
    results.push({
      ...emptyRow(scenario.name),
      messages: scenario.ids.length,
      delivered: scenario.ids.filter((id) => receiver.acceptedCount(id) > 0).length,
      lost: Number.NaN,
      outcome: 'failed',
    });
  }
  for (const pod of scenario.pods) console.log(`--- ${pod.name} (last lines)\n${pod.tail()}`);
}
