import { expect } from 'chai';
import type { PgCluster } from './cluster.ts';
import { sleep } from './cluster.ts';
import { http, type ServicePod, startPod, stopPods } from './pods.ts';
import type { Receiver } from './receiver.ts';
import type { RunningToxiproxy } from './toxiproxy.ts';

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
    const pod = await startPod(`${this.name.split(' ')[0]}-${name}`, env);
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
    const deadline = Date.now() + timeoutMs;
    while (this.rig.receiver.accepted < count) {
      if (Date.now() > deadline)
        throw new Error(`only ${this.rig.receiver.accepted} of ${count} delivered within ${timeoutMs} ms`);
      await sleep(50);
    }
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
    await stopPods(this.pods);
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
