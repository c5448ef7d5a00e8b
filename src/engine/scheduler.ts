import pg from 'pg';
import type { PgBoss } from 'pg-boss';
import { LongLivedConnection } from '../db/long-lived-connection.ts';
import { type ConnectionBounds, connectionSettings, type Pool } from '../db/pool.ts';
import { claimDueJobs, listenJobsChanged, nextJobWakeUp } from '../db/sqlc/jobs_sql.ts';
import { withTransaction } from '../db/transaction.ts';
import type { Logger } from '../observability/logger.ts';
import { enqueueRun, type RunRequest } from './run-queue.ts';

export interface SchedulerSettings {
  instanceId: string;
  /** The safety-net poll, even when nothing asked for a wake-up. */
  fetchIntervalMs: number;
  jobLeaseSeconds: number;
  /** Runs claimed per transaction; a full batch triggers another round at once. */
  maxJobsPerClaim?: number;
  /** Bounds and session settings for the LISTEN connection. */
  connectionBounds?: ConnectionBounds;
  /** How often the LISTEN connection is probed (ms); default 3000. */
  listenProbeIntervalMs?: number;
}

/** A probe of the LISTEN connection that takes longer than this (ms) means the connection is dead. */
const listenProbeTimeoutMs = 3_000;

export interface SchedulerEvents {
  onClaimed?(runs: RunRequest[]): void;
  onError?(error: unknown): void;
}

/**
 * The scheduler (also "the fetcher", as in `job_manager_fetch_errors_total`):
 * turns due jobs into queued runs. It sleeps until the earliest moment
 * something can be due (next_run_at or an expiring lease, on the database
 * clock), never longer than the poll interval, and wakes at once on a
 * NOTIFY from any pod that started or changed a job.
 */
export class Scheduler {
  readonly #pool: Pool;
  readonly #boss: PgBoss;
  readonly #logger: Logger;
  readonly #events: SchedulerEvents;
  #settings: SchedulerSettings;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  #stopped = true;
  #listener: LongLivedConnection | undefined;
  #consecutiveErrors = 0;

  constructor(pool: Pool, boss: PgBoss, settings: SchedulerSettings, logger: Logger, events: SchedulerEvents = {}) {
    this.#pool = pool;
    this.#boss = boss;
    this.#settings = settings;
    this.#logger = logger.child({ component: 'scheduler' });
    this.#events = events;
  }

  /** Starts the loop; with a `connectionString` (a real session) it also LISTENs there for job changes. */
  async start(connectionString: string | undefined): Promise<void> {
    this.#stopped = false;
    if (connectionString) await this.#listen(connectionString);
    this.wake();
  }

  /** Applies a new poll interval (live configuration). */
  setFetchInterval(ms: number): void {
    this.#settings = { ...this.#settings, fetchIntervalMs: ms };
  }

  /** Runs a fetch round now (or right after the one in progress). */
  wake(): void {
    if (this.#stopped) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    clearTimeout(this.#timer);
    this.#running = this.#round().finally(() => {
      this.#running = undefined;
      if (this.#again) {
        this.#again = false;
        this.wake();
      }
    });
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
    const listener = this.#listener;
    this.#listener = undefined;
    await listener?.close();
  }

  /**
   * One claim-and-enqueue transaction outside the timer loop (the engine's
   * `runOnce`); returns the runs it queued.
   */
  claimOnce(maxJobs = this.#settings.maxJobsPerClaim ?? 100): Promise<RunRequest[]> {
    return this.#claim(maxJobs);
  }

  async #round(): Promise<void> {
    let delayMs = this.#settings.fetchIntervalMs;
    try {
      const max = this.#settings.maxJobsPerClaim ?? 100;
      const runs = await this.#claim(max);
      if (runs.length > 0) this.#events.onClaimed?.(runs);
      if (runs.length === max) {
        this.#again = true;
        return;
      }
      const wakeUp = await nextJobWakeUp(this.#pool);
      if (wakeUp?.waitMs !== null && wakeUp?.waitMs !== undefined) {
        // A few ms late is better than early: an early timer finds nothing due.
        delayMs = Math.min(delayMs, Math.max(0, Math.ceil(wakeUp.waitMs) + 5));
      }
      this.#consecutiveErrors = 0;
    } catch (error) {
      this.#consecutiveErrors += 1;
      delayMs = Math.min(delayMs, 250 * 2 ** Math.min(this.#consecutiveErrors, 5));
      this.#logger.error({ err: error, retryInMs: delayMs }, 'fetch round failed');
      this.#events.onError?.(error);
    } finally {
      if (!this.#stopped) {
        clearTimeout(this.#timer);
        this.#timer = setTimeout(() => this.wake(), delayMs);
      }
    }
  }

  async #claim(maxJobs: number): Promise<RunRequest[]> {
    return withTransaction(this.#pool, async (client) => {
      const claimed = await claimDueJobs(client, {
        maxJobs,
        owner: this.#settings.instanceId,
        leaseSeconds: this.#settings.jobLeaseSeconds,
      });
      const runs: RunRequest[] = [];
      for (const job of claimed) {
        // run_id and run_due_at are set on every in_progress row (jobs_run_fields_iff_in_progress).
        const run: RunRequest = {
          jobId: String(job.id),
          jobName: job.name,
          handler: job.handler,
          batchSize: job.batchSize,
          runId: job.runId!,
          dueAt: job.dueAt!.toISOString(),
        };
        await enqueueRun(this.#boss, client, run);
        runs.push(run);
      }
      return runs;
    });
  }

  /**
   * Opens the LISTEN connection and keeps it honest: it is probed (LISTEN
   * again, an idempotent round trip) every few seconds, and one that errors,
   * ends or does not answer within 3 s (a frozen backend, a half-open network
   * path) is replaced with a warning by one reconnect loop (capped backoff
   * with jitter, see LongLivedConnection). Polling covers the gap.
   */
  async #listen(connectionString: string): Promise<void> {
    const listener = new LongLivedConnection({
      create: () => {
        const client = new pg.Client({
          connectionString,
          application_name: `job-manager ${this.#settings.instanceId} fetcher listener`,
          ...connectionSettings(this.#settings.connectionBounds),
        });
        client.on('notification', () => this.wake());
        return client;
      },
      setUp: async (client) => {
        await listenJobsChanged(client);
      },
      probe: async (client) => {
        await listenJobsChanged(client);
      },
      probeIntervalMs: this.#settings.listenProbeIntervalMs ?? 3_000,
      probeTimeoutMs: listenProbeTimeoutMs,
      onLost: (reason, error) => {
        this.#logger.warn(
          { err: error, reason },
          'job change listener lost; replacing it (polling continues meanwhile)',
        );
        this.wake(); // a change may have been missed
      },
      onAttemptFailed: (error, attempt, delayMs) =>
        this.#logger.warn(
          { reason: (error as Error)?.message, attempt, retryInMs: delayMs },
          'job change listener: reconnect failed',
        ),
      onReplaced: (_client, attempts) => {
        this.#logger.info({ attempts }, 'job change listener replaced');
        this.wake();
      },
    });
    await listener.open();
    if (this.#stopped) {
      await listener.close();
      return;
    }
    this.#listener = listener;
  }
}
