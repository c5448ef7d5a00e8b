import pg from 'pg';
import type { PgCluster } from './cluster.ts';
import { until } from './kit.ts';

/**
 * Samples pg_stat_activity on every server every 250 ms (its own connection
 * to each, reopened when a server is gone) and keeps, per pod, the most
 * backends seen at once across all servers (application_name
 * `job-manager <instance>…`).
 */
export class BackendSampler {
  readonly #servers: PgCluster[];
  readonly #clients = new Map<PgCluster, pg.Client | undefined>();
  readonly #peaks = new Map<string, number>();
  /** When each pod's peak was first seen (epoch ms). */
  readonly #peakAt = new Map<string, number>();
  #timer: NodeJS.Timeout | undefined;
  #busy = false;
  samples = 0;

  constructor(servers: PgCluster[]) {
    this.#servers = servers;
  }

  start(): void {
    this.#timer = setInterval(() => void this.#sample(), 250);
  }

  /** The highest backend count seen for each pod (instance ids). */
  peaks(pods: string[]): Record<string, number> {
    return Object.fromEntries(pods.map((pod) => [pod, this.#peaks.get(pod) ?? 0]));
  }

  /** Every pod seen, with its peak and when it was first reached (epoch ms). */
  allPeaks(): Array<{ instance: string; peak: number; at: number }> {
    return [...this.#peaks].map(([instance, peak]) => ({ instance, peak, at: this.#peakAt.get(instance) ?? 0 }));
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await until('the last sample', () => !this.#busy, 10_000).catch(() => {});
    for (const client of this.#clients.values()) await client?.end().catch(() => {});
  }

  async #sample(): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    try {
      const counts = new Map<string, number>();
      for (const server of this.#servers) {
        for (const row of await this.#query(server)) {
          const instance = /^job-manager (\S+)/.exec(row.name)?.[1];
          if (instance) counts.set(instance, (counts.get(instance) ?? 0) + row.n);
        }
      }
      for (const [instance, n] of counts) {
        if (n <= (this.#peaks.get(instance) ?? 0)) continue;
        this.#peaks.set(instance, n);
        this.#peakAt.set(instance, Date.now());
      }
      this.samples += 1;
    } finally {
      this.#busy = false;
    }
  }

  async #query(server: PgCluster): Promise<Array<{ name: string; n: number }>> {
    try {
      let client = this.#clients.get(server);
      if (!client) {
        client = new pg.Client({
          connectionString: server.url(),
          connectionTimeoutMillis: 1_000,
          query_timeout: 2_000,
        });
        client.on('error', () => this.#clients.set(server, undefined));
        this.#clients.set(server, client);
        await client.connect();
      }
      const { rows } = await client.query<{ name: string; n: number }>(
        'SELECT application_name AS name, count(*)::int AS n FROM pg_stat_activity GROUP BY 1',
      );
      return rows;
    } catch {
      this.#clients
        .get(server)
        ?.end()
        .catch(() => {});
      this.#clients.set(server, undefined);
      return [];
    }
  }
}
