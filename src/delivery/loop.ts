/**
 * How a message is sent: the dispatch loop (claim, deliver, decide, record,
 * cache). The engine's `send-messages` handler is a thin adapter around
 * `dispatchMessages`; nothing here knows about jobs, pg-boss or HTTP routes.
 *
 * It works in chunks of a few times the delivery concurrency (see
 * `dispatchChunkSize`): each chunk is claimed (claim.ts: due messages promoted,
 * then FOR UPDATE SKIP LOCKED, leased to this run), sent, and its outcomes recorded in one statement before the
 * next is claimed, so a lease only has to outlive one chunk and a stopped job
 * stops between chunks.
 */
import type { Pool } from '../db/pool.ts';
import { releaseExpiredMessageLeases } from '../db/sqlc/messages_sql.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { type BackoffOptions, type DeliveryDecision, decideOutcome } from './backoff.ts';
import { claimDueMessages } from './claim.ts';
import { type BreakerTurn, CircuitBreaker } from './policies/circuit-breaker.ts';
import type { DeliveryGate } from './policies/rate-limit.ts';
import type { SentCache } from './sent-cache.ts';
import { writeChunkOutcomes } from './settle.ts';
import type { DeliveryClient, DeliveryResult } from './webhook.ts';

/** Everything one dispatch needs to know, read once per run (live configuration applies from the next run). */
export interface DispatchSettings {
  /** Lease owner prefix; the run id is appended so two runs of one pod never share a lease. */
  instanceId: string;
  /** How long a claimed message stays ours (s). */
  messageLeaseSeconds: number;
  /** Deliveries in flight at once within one run. */
  concurrency: number;
  /** A transient failure on this attempt or later is final. */
  maxAttempts: number;
  /** The webhook's whole-request timeout (ms); with the lease it bounds the chunk size. */
  timeoutMs: number;
  backoff: Pick<BackoffOptions, 'baseMs' | 'maxMs'>;
}

/** The parts dispatch works with; `delivery` and `cache` are the current ones (live configuration swaps them). */
export interface DispatchDependencies {
  pool: Pool;
  delivery: DeliveryClient;
  cache: SentCache;
  metrics: Metrics;
  logger: Logger;
  /** The outbound rate limit and Retry-After pause shared by every pod; unset: neither. */
  gate?: DeliveryGate;
  /** The pod's webhook circuit breaker; without one, deliveries are never held back. */
  breaker?: CircuitBreaker;
}

export interface DispatchRequest {
  /** Identifies the run. */
  runId: string;
  /**
   * The run's execution fence (see BeginJobExecution): part of the lease owner,
   * and once it is superseded nothing more is claimed. Absent outside job runs.
   */
  executionId?: string;
  /** At most this many messages are claimed. */
  batchSize: number;
  /** Checked before every claim: an aborted run claims nothing more. */
  signal: AbortSignal;
  /**
   * The shutdown deadline: aborts webhook requests in flight; their messages
   * (and any not yet tried) are handed back with the same id, the attempt not counted.
   */
  abortDeliveries?: AbortSignal;
}

export interface DispatchSummary {
  claimed: number;
  sent: number;
  retried: number;
  failed: number;
  /** Expired `sending` leases (a crashed pod's messages) returned to pending first. */
  recovered: number;
  /** Claimed but not tried (breaker open, shutdown, failed probe): back to pending, attempt not counted. */
  handedBack: number;
  [key: string]: number;
}

/**
 * Sends up to `batchSize` of the oldest due pending messages (created_at, id).
 * Never throws for a delivery failure: those become retries or failures on the
 * message. Throws only when the database cannot be reached.
 */
export async function dispatchMessages(
  request: DispatchRequest,
  settings: DispatchSettings,
  deps: DispatchDependencies,
): Promise<DispatchSummary> {
  const { pool, delivery, cache, metrics, logger, gate } = deps;
  const breaker = deps.breaker ?? neverOpen;
  const abortDeliveries = request.abortDeliveries ?? new AbortController().signal;
  const summary: DispatchSummary = { claimed: 0, sent: 0, retried: 0, failed: 0, recovered: 0, handedBack: 0 };
  summary.recovered = (await releaseExpiredMessageLeases(pool)).length;
  const owner = `${settings.instanceId}/${request.executionId ?? request.runId}`;
  let remaining = request.batchSize;
  while (remaining > 0 && !request.signal.aborted) {
    let turn: BreakerTurn;
    try {
      turn = await breaker.turn(request.signal); // waits while the webhook's breaker is open
    } catch {
      break;
    }
    const probe = turn === 'probe';
    // The probe must end with a verdict or be released, whatever happens on the way.
    let probeSettled = !probe;
    let chunk: Awaited<ReturnType<typeof claimDueMessages>> = [];
    let tried: Array<DeliveryDecision | undefined> = [];
    try {
      let wanted = probe ? 1 : Math.min(remaining, dispatchChunkSize(settings));
      const permit = gate ? await gate.acquire(wanted, request.signal) : undefined;
      if (permit) wanted = permit.granted;
      if (wanted === 0) break;
      chunk = await claimDueMessages(pool, {
        leaseSeconds: settings.messageLeaseSeconds,
        owner,
        executionId: request.executionId ?? null,
        maxMessages: wanted,
      });
      if (chunk.length === 0) break;
      if (permit?.heldBackBy) metrics.deliveriesHeldBack.inc({ reason: permit.heldBackBy }, chunk.length);
      remaining -= chunk.length;
      summary.claimed += chunk.length;
      chunk.sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || a.id.localeCompare(b.id));
      tried = await mapWithConcurrency(chunk, settings.concurrency, async (message) => {
        // Not tried: the shutdown deadline passed, a Retry-After pause (ours or, seen at this
        // chunk's start, another pod's) is in force, or the breaker opened since the claim.
        if (abortDeliveries.aborted || gate?.paused() || (!probe && !breaker.allowsDelivery())) return undefined;
        const started = performance.now();
        // deliver() reports failures as results; a throw is a bug, treated as transient so nothing is lost.
        const result: DeliveryResult = await delivery
          .deliver({ id: message.id, to: message.recipient, content: message.content }, abortDeliveries)
          .catch((error: unknown) => ({ outcome: 'transient', error: `delivery crashed: ${String(error)}` }));
        // Aborted at the shutdown deadline: handed back, the attempt not counted.
        if (abortDeliveries.aborted && result.outcome === 'transient') return undefined;
        metrics.webhookDuration.observe(
          { status_class: statusClass(result.httpStatus) },
          (performance.now() - started) / 1000,
        );
        if (gate && result.outcome === 'transient' && result.retryAfterMs !== undefined) {
          if (result.httpStatus === 429 || result.httpStatus === 503) await gate.pause(result.retryAfterMs);
        }
        breaker.record(result.outcome === 'transient' ? 'transient' : 'answered', probe);
        if (probe) probeSettled = true;
        // A failed probe only confirms the outage the breaker already knows of: not the message's fault.
        if (probe && result.outcome === 'transient') return undefined;
        return decideOutcome(result, message.attempts, settings.maxAttempts, settings.backoff);
      });
    } finally {
      if (!probeSettled) breaker.releaseProbe();
    }
    const decided: Array<{ id: string; decision: DeliveryDecision }> = [];
    const untried: string[] = [];
    for (const [index, decision] of tried.entries()) {
      const id = chunk[index]!.id;
      if (decision) decided.push({ id, decision });
      else untried.push(id);
    }
    // Kept and retried until the database takes them (a restart, a failover).
    const sentAt = await writeChunkOutcomes(pool, { owner, decided, untried }, { signal: abortDeliveries, logger });
    // Handed-back messages were not worked on: they do not use up the batch.
    remaining += untried.length;
    summary.handedBack += untried.length;
    const sent = [];
    let sentInChunk = 0;
    for (const [index, decision] of tried.entries()) {
      const message = chunk[index]!;
      if (!decision) continue;
      if (decision.status === 'sent') {
        const at = sentAt.get(message.id);
        if (at) sent.push({ id: message.id, externalMessageId: decision.externalMessageId, sentAt: at.toISOString() });
        sentInChunk += 1;
      } else if (decision.status === 'pending') {
        summary.retried += 1;
        metrics.messagesRetried.inc();
        logger.warn(
          { messageId: message.id, attempt: message.attempts, error: decision.error },
          'delivery failed; will retry',
        );
      } else {
        summary.failed += 1;
        metrics.messagesFailed.inc({ reason: decision.reason });
        logger.error({ messageId: message.id, attempt: message.attempts, error: decision.error }, 'message failed');
      }
    }
    summary.sent += sentInChunk;
    metrics.messagesSent.inc(sentInChunk);
    await cache.remember(sent);
  }
  return summary;
}

/** Stands in when no breaker is given: never opens. */
const neverOpen = new CircuitBreaker({ threshold: Number.POSITIVE_INFINITY });

/**
 * Messages claimed at once: each of the `concurrency` lanes sends at most as
 * many one after another as fit, at the webhook timeout each, in half the
 * lease (the configuration guarantees at least one), and at most 4.
 */
export function dispatchChunkSize(
  settings: Pick<DispatchSettings, 'concurrency' | 'messageLeaseSeconds' | 'timeoutMs'>,
): number {
  const perLane = Math.floor((settings.messageLeaseSeconds * 1000) / (2 * settings.timeoutMs));
  return settings.concurrency * Math.min(4, Math.max(1, perLane));
}

function statusClass(status: number | undefined): string {
  if (status === undefined) return 'error';
  return status === 0 ? 'dry-run' : `${Math.floor(status / 100)}xx`;
}

/** Runs `work` over `items` with at most `limit` in flight, keeping the results in order. */
async function mapWithConcurrency<T, R>(items: T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index]!);
    }
  });
  await Promise.all(lanes);
  return results;
}
