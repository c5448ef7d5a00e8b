import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { withTimeout } from '../lib/with-timeout.ts';

/** Capped exponential backoff with full jitter between reconnect attempts (ms). */
export interface ReconnectBackoff {
  /** The cap of the first pause; each failed attempt doubles it. */
  firstDelayMs: number;
  /** The largest cap: no pause is ever longer. */
  maxDelayMs: number;
}

/** 250 ms doubling to 8 s: a replaced connection is back within 10 s of the server's return. */
export const defaultReconnectBackoff: ReconnectBackoff = { firstDelayMs: 250, maxDelayMs: 8_000 };

export interface LongLivedConnectionOptions {
  /** A new, unconnected client (its connection settings, application_name …). Called once per attempt. */
  create(): pg.Client;
  /** Runs on every fresh connection before it counts as up (e.g. LISTEN); a rejection fails the attempt. */
  setUp(client: pg.Client): Promise<void>;
  /** A cheap round trip that proves the connection alive (e.g. LISTEN again); none when omitted. */
  probe?(client: pg.Client): Promise<void>;
  /** How often `probe` runs (ms); default 3000. */
  probeIntervalMs?: number;
  /** A probe not answered within this (ms) means the connection is dead; default 3000. */
  probeTimeoutMs?: number;
  backoff?: ReconnectBackoff;
  /** Told once per loss, however many signals (`error`, `end`, failed probe) announced it. */
  onLost?(reason: string, error: unknown): void;
  /** Told about each failed reconnect attempt (counting from 1) and the pause before the next (ms). */
  onAttemptFailed?(error: unknown, attempt: number, delayMs: number): void;
  /** Told when a replacement is up (not for the first connection). */
  onReplaced?(client: pg.Client, attempts: number): void;
  /** [0, 1) for the jitter; Math.random unless a test pins it. */
  random?: () => number;
}

/**
 * One long-lived PostgreSQL session (a LISTEN connection) that stays up:
 * whatever mix of signals announces its loss (an `error` event, an `end`
 * event, a failed or unanswered probe, a failed `connect()` or set-up), it is
 * replaced by exactly one loop, which pauses a random time up to a cap
 * doubling from `firstDelayMs` to `maxDelayMs` (full jitter) before each
 * attempt. At most one client is open or opening at any moment: a lost one
 * is destroyed before the loop starts, a failed attempt's before the next.
 * `close()` stops the loop and drops the client without waiting on a server
 * that may never answer.
 */
export class LongLivedConnection {
  readonly #options: LongLivedConnectionOptions;
  /** The one client open or opening. */
  #client: pg.Client | undefined;
  #up = false;
  #loop: Promise<void> | undefined;
  #probe: NodeJS.Timeout | undefined;
  readonly #closing = new AbortController();

  constructor(options: LongLivedConnectionOptions) {
    this.#options = options;
  }

  /** The connected client, or undefined while it is being replaced. */
  get client(): pg.Client | undefined {
    return this.#up ? this.#client : undefined;
  }

  /**
   * Opens the first connection. Later losses are repaired in the background.
   * @throws the connect or set-up error when the first attempt fails (nothing is left open or retrying)
   */
  async open(): Promise<void> {
    this.#loop = Promise.resolve(); // a loss signalled during this first attempt starts no loop
    try {
      await this.#attempt();
    } finally {
      this.#loop = undefined;
    }
  }

  /** Stops reconnecting and drops the client (waits at most about a second for a clean goodbye). */
  async close(): Promise<void> {
    if (this.#closing.signal.aborted) return;
    this.#closing.abort();
    clearInterval(this.#probe);
    const client = this.#client;
    this.#client = undefined;
    this.#up = false;
    if (client) {
      client.removeAllListeners('notification');
      await withTimeout(client.end(), 1_000).catch(() => destroy(client));
    }
    await this.#loop?.catch(() => {});
  }

  /** Handles every loss signal of `client`; only the first for the current client counts. */
  #lost(client: pg.Client, reason: string, error?: unknown): void {
    if (client !== this.#client) return;
    this.#client = undefined;
    const wasUp = this.#up;
    this.#up = false;
    clearInterval(this.#probe);
    destroy(client);
    if (this.#closing.signal.aborted) return;
    if (wasUp) this.#options.onLost?.(reason, error);
    if (!this.#loop) this.#loop = this.#reconnect().finally(() => (this.#loop = undefined));
  }

  async #reconnect(): Promise<void> {
    const { firstDelayMs, maxDelayMs } = this.#options.backoff ?? defaultReconnectBackoff;
    const random = this.#options.random ?? Math.random;
    let delayMs = Math.floor(random() * firstDelayMs);
    for (let attempt = 1; ; attempt += 1) {
      try {
        await sleep(delayMs, undefined, { signal: this.#closing.signal });
      } catch {
        return; // closed
      }
      try {
        const client = await this.#attempt();
        this.#options.onReplaced?.(client, attempt);
        return;
      } catch (error) {
        if (this.#closing.signal.aborted) return;
        delayMs = Math.floor(random() * Math.min(maxDelayMs, firstDelayMs * 2 ** Math.min(attempt, 30)));
        this.#options.onAttemptFailed?.(error, attempt, delayMs);
      }
    }
  }

  /** One connect and set-up; the client is destroyed when any part fails or the connection closed meanwhile. */
  async #attempt(): Promise<pg.Client> {
    const client = this.#options.create();
    this.#client = client;
    client.on('error', (error) => this.#lost(client, 'connection error', error));
    client.on('end', () => this.#lost(client, 'connection ended'));
    try {
      await client.connect();
      await this.#options.setUp(client);
      if (this.#client !== client) throw new Error('connection lost while it was being set up');
    } catch (error) {
      if (this.#client === client) this.#client = undefined;
      destroy(client);
      throw error;
    }
    this.#up = true;
    this.#startProbe(client);
    return client;
  }

  #startProbe(client: pg.Client): void {
    const { probe, probeIntervalMs = 3_000, probeTimeoutMs = 3_000 } = this.#options;
    if (!probe) return;
    let probing = false;
    clearInterval(this.#probe);
    this.#probe = setInterval(() => {
      if (probing) return;
      probing = true;
      withTimeout(probe(client), probeTimeoutMs)
        .catch((error: unknown) => this.#lost(client, 'probe failed', error))
        .finally(() => {
          probing = false;
        });
    }, probeIntervalMs).unref();
  }
}

/** Drops a connection without waiting for the server (which may never answer). */
function destroy(client: pg.Client): void {
  client.end().catch(() => {});
  (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
}
