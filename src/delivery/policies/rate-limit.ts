/**
 * One outbound rate limit and one pause for every pod, and the delivery
 * policy that applies them. Both live in the single row of
 * `webhook_rate_limit`, on the database clock:
 *
 * - WEBHOOK_RATE_LIMIT_PER_SECOND (r > 0) is a token bucket refilled at r per
 *   second, holding at most max(1, r / 2) tokens. Before a pod claims a chunk it
 *   takes up to as many tokens as it wants to send in one short statement
 *   (TakeDeliveryTokens) and claims only as many messages as it got, so all
 *   pods together stay at r per second, with bursts of at most half a second's
 *   allowance (any one-second window: at most 1.5 r). No lock is held while
 *   anything is sent.
 * - A 429 or 503 with Retry-After from the webhook moves `paused_until`
 *   forward (never back); every pod sees it at its next chunk and waits, and
 *   the pod that got it stops starting deliveries at once.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Pool } from '../../db/pool.ts';
import { getDeliveryPause, pauseDeliveries, takeDeliveryTokens } from '../../db/sqlc/webhook_rate_limit_sql.ts';
import { MAX_RETRY_AFTER_MS } from '../backoff.ts';
import type { DeliveryPolicyFactory } from '../policy.ts';

export interface DeliveryPermit {
  /** Messages that may be claimed and sent now; 0: none (the run was aborted, or the wait was too long). */
  granted: number;
  /** Why this chunk had to wait first, if it did. */
  heldBackBy?: 'rate_limit' | 'paused';
}

/** What the rate-limit policy asks before each chunk and tells after a Retry-After. */
export interface DeliveryGate {
  /**
   * Waits until deliveries may go (no pause, at least one token) and takes up
   * to `wanted` tokens. Gives up with `granted: 0` when `signal` aborts or the
   * wait would pass `maxWaitMs` (the run ends; the job's next run tries again).
   */
  acquire(wanted: number, signal: AbortSignal): Promise<DeliveryPermit>;
  /** Pauses every pod's deliveries for `ms` (capped at one hour) from now on the database clock. */
  pause(ms: number): Promise<void>;
  /** A pause this pod knows of is in force: start no new delivery. */
  paused(): boolean;
  /** Milliseconds left of the shared pause (database clock); 0: none. For the metrics gauge. */
  pauseRemainingMs(): Promise<number>;
}

export interface SharedDeliveryGateOptions {
  /** WEBHOOK_RATE_LIMIT_PER_SECOND, read at every acquire (live configuration). 0: no limit. */
  ratePerSecond: () => number;
  /** Longest a run waits in one acquire before giving up; default 30 s. */
  maxWaitMs?: number;
}

/** Bucket size for rate r: half a second's allowance, at least one token. */
export function bucketCapacity(ratePerSecond: number): number {
  return Math.max(1, ratePerSecond / 2);
}

/** The gate shared through PostgreSQL by every pod on the same database. */
export function createSharedDeliveryGate(pool: Pool, options: SharedDeliveryGateOptions): DeliveryGate {
  const maxWaitMs = options.maxWaitMs ?? 30_000;
  /** Local clock; only used to stop starting deliveries quickly, never to decide a shared time. */
  let knownPauseUntil = 0;

  async function acquire(wanted: number, signal: AbortSignal): Promise<DeliveryPermit> {
    const started = Date.now();
    let heldBackBy: DeliveryPermit['heldBackBy'];
    for (;;) {
      if (signal.aborted || wanted <= 0) return { granted: 0 };
      const rate = options.ratePerSecond();
      let waitMs: number;
      if (rate > 0) {
        const take = await takeDeliveryTokens(pool, { capacity: bucketCapacity(rate), ratePerSecond: rate, wanted });
        if (!take) throw new Error('webhook_rate_limit row is missing (migration not applied?)');
        if (take.granted > 0) return { granted: take.granted, heldBackBy };
        if (take.pausedMs > 0) {
          heldBackBy = 'paused';
          waitMs = take.pausedMs;
        } else {
          heldBackBy ??= 'rate_limit';
          waitMs = Math.max(5, Math.ceil(((1 - take.tokensLeft) / rate) * 1000));
        }
      } else {
        const pause = await getDeliveryPause(pool);
        if (!pause || pause.pausedMs === 0) return { granted: wanted, heldBackBy };
        heldBackBy = 'paused';
        waitMs = pause.pausedMs;
      }
      if (heldBackBy === 'paused') knownPauseUntil = Math.max(knownPauseUntil, Date.now() + waitMs);
      if (Date.now() + waitMs - started > maxWaitMs) return { granted: 0, heldBackBy };
      try {
        await sleep(waitMs, undefined, { signal });
      } catch {
        return { granted: 0 };
      }
    }
  }

  return {
    acquire,
    async pause(ms) {
      const pauseMs = Math.max(0, Math.min(Math.round(ms), MAX_RETRY_AFTER_MS));
      knownPauseUntil = Math.max(knownPauseUntil, Date.now() + pauseMs);
      const row = await pauseDeliveries(pool, { pauseMs });
      if (row) knownPauseUntil = Math.max(knownPauseUntil, Date.now() + row.pausedMs);
    },
    paused: () => Date.now() < knownPauseUntil,
    async pauseRemainingMs() {
      return (await getDeliveryPause(pool))?.pausedMs ?? 0;
    },
  };
}

/**
 * The gate as a delivery policy: each claim takes only as many messages as
 * the gate grants (waiting for tokens or for a pause to end; none: the run
 * ends), counting a chunk that had to wait in `deliveriesHeldBack{reason}`; no
 * message starts while a known pause is in force; and a 429 or 503 with
 * Retry-After pauses every pod's deliveries.
 */
export function rateLimit(gate: DeliveryGate): DeliveryPolicyFactory {
  return ({ signal, metrics }) => {
    let heldBackBy: DeliveryPermit['heldBackBy'];
    return {
      async beforeClaim(wanted) {
        const permit = await gate.acquire(wanted, signal);
        heldBackBy = permit.heldBackBy;
        return permit.granted;
      },
      afterClaim(claimed) {
        if (heldBackBy) metrics.deliveriesHeldBack.inc({ reason: heldBackBy }, claimed);
      },
      beforeSend: () => !gate.paused(),
      async afterAttempt(result) {
        if (result.outcome !== 'transient' || result.retryAfterMs === undefined) return undefined;
        if (result.httpStatus === 429 || result.httpStatus === 503) await gate.pause(result.retryAfterMs);
        return undefined;
      },
    };
  };
}
