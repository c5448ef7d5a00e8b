/**
 * The maintenance loop: every pod ticks every `MAINTENANCE_INTERVAL_MS`, and
 * the pod that takes the maintenance turn (a lease row, `maintenance_lease`)
 * runs one pass; the others skip that tick. A pass removes, in bounded
 * batches, each its own short statement:
 *
 * - messages in a terminal status (`sent`, `failed`, `cancelled`) whose last
 *   change (`updated_at`) is older than `MESSAGE_RETENTION_DAYS` (0: none),
 *   with their attempts (a delete trigger on messages). Pending and sending messages
 *   never go, however old;
 * - idempotency keys older than 24 h (src/messages/idempotency.ts).
 *
 * The turn is a lease, not a lock held by a session or a transaction: a pass
 * is many transactions, and it must work through PgBouncer's transaction
 * pooling. The lease is renewed before each batch and handed back at the end;
 * a pod that dies mid-pass leaves a lease that expires after `leaseMs`.
 * Rows are chosen `FOR UPDATE SKIP LOCKED`: a batch never waits for a claim, a
 * settle, a retry or a cancel, and touches no pending row, so intake and
 * dispatch never wait for it.
 */
import type { LiveSettings } from '../config/live-config.ts';
import type { Pool } from '../db/pool.ts';
import { deleteExpiredMessages, releaseMaintenanceLease, takeMaintenanceLease } from '../db/sqlc/maintenance_sql.ts';
import { PURGE_BATCH_ROWS, purgeExpiredIdempotencyKeyBatch } from '../messages/idempotency.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics, maintenanceTables } from '../observability/metrics.ts';

/** Messages per retention DELETE: a few milliseconds of row locks, a bounded WAL burst. */
export const RETENTION_BATCH_ROWS = 5_000;

/** How long the maintenance turn is held without a renewal (renewed before every batch). */
export const MAINTENANCE_LEASE_MS = 60_000;

type Table = (typeof maintenanceTables)[number];

export interface MaintenanceDeps {
  pool: Pool;
  /** Owner name on the lease (INSTANCE_ID). */
  owner: string;
  logger: Logger;
  metrics?: Pick<Metrics, 'maintenanceRowsRemoved' | 'maintenancePassDuration'>;
}

/** A pass: `ran` false when another pod held the turn; `removed` rows by table. */
export type PassOutcome = { ran: false } | { ran: true; removed: Record<Table, number> };

interface Sweep {
  table: Table;
  batchRows: number;
  /** Removes one batch; returns how many rows went. */
  batch(): Promise<number>;
}

/**
 * One maintenance pass, if this pod gets the turn.
 * @param retentionDays MESSAGE_RETENTION_DAYS as it is now (0: no message is removed)
 * @param shouldStop asked before each batch; true ends the pass early (shutdown)
 * @throws the database's error when a statement fails (the lease then expires on its own)
 */
export async function runMaintenancePass(
  deps: MaintenanceDeps,
  retentionDays: number,
  shouldStop: () => boolean = () => false,
): Promise<PassOutcome> {
  const { pool, owner, metrics } = deps;
  const holdTurn = async () => (await takeMaintenanceLease(pool, { leaseMs: MAINTENANCE_LEASE_MS, owner })) !== null;
  if (!(await holdTurn())) return { ran: false };
  const started = performance.now();
  const sweeps: Sweep[] = [
    ...(retentionDays > 0
      ? [
          {
            table: 'messages' as const,
            batchRows: RETENTION_BATCH_ROWS,
            batch: async () =>
              (await deleteExpiredMessages(pool, { retentionDays, maxRows: RETENTION_BATCH_ROWS }))?.deleted ?? 0,
          },
        ]
      : []),
    { table: 'idempotency_keys', batchRows: PURGE_BATCH_ROWS, batch: () => purgeExpiredIdempotencyKeyBatch(pool) },
  ];
  const removed: Record<Table, number> = { messages: 0, idempotency_keys: 0 };
  try {
    for (const sweep of sweeps) {
      for (;;) {
        // Lost the turn (the lease expired and another pod took it): stop; the rows left are its work now.
        if (shouldStop() || !(await holdTurn())) return { ran: true, removed };
        const count = await sweep.batch();
        removed[sweep.table] += count;
        metrics?.maintenanceRowsRemoved.inc({ table: sweep.table }, count);
        if (count < sweep.batchRows) break;
      }
    }
  } finally {
    metrics?.maintenancePassDuration.observe((performance.now() - started) / 1000);
    await releaseMaintenanceLease(pool, { owner }).catch(() => {});
  }
  return { ran: true, removed };
}

export interface MaintenanceLoop {
  /** Runs a pass now (tests; the loop also runs them on its own). */
  runPass(): Promise<PassOutcome>;
  /** Stops ticking; a pass in progress ends after its current batch, and is waited for. */
  stop(): Promise<void>;
}

/**
 * Starts the loop: the first tick soon after start (within 30 s), then every
 * `MAINTENANCE_INTERVAL_MS`, both read live. A failed pass is logged and the
 * next tick tries again.
 */
export function startMaintenance(settings: LiveSettings, deps: MaintenanceDeps): MaintenanceLoop {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<PassOutcome | undefined> = Promise.resolve(undefined);
  const interval = () => settings.current.maintenance.intervalMs;
  const pass = () => runMaintenancePass(deps, settings.current.maintenance.retentionDays, () => stopped);
  const schedule = (delayMs: number) => {
    clearTimeout(timer);
    if (stopped) return;
    timer = setTimeout(tick, delayMs);
    timer.unref();
  };
  const tick = () => {
    running = running.then(pass).then(
      (outcome) => {
        if (outcome.ran && (outcome.removed.messages > 0 || outcome.removed.idempotency_keys > 0))
          deps.logger.info({ removed: outcome.removed }, 'maintenance pass removed expired rows');
        return outcome;
      },
      (error: unknown) => {
        deps.logger.warn({ err: error }, 'maintenance pass failed; retrying at the next tick');
        return undefined;
      },
    );
    void running.then(() => schedule(interval()));
  };
  let followedInterval = interval();
  settings.onChange((config) => {
    if (config.maintenance.intervalMs === followedInterval) return;
    followedInterval = config.maintenance.intervalMs;
    // A new interval takes effect now, not after the old one has run out.
    schedule(followedInterval);
  });
  schedule(Math.min(interval(), 30_000));
  return {
    runPass: async () => {
      const next = running.then(pass);
      running = next.catch(() => undefined);
      return next;
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}
