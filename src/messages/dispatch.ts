/**
 * How a message is sent: the dispatch loop (claim, deliver, decide, record,
 * cache). The engine's `send-messages` handler is a thin adapter around
 * `dispatchMessages`; nothing here knows about jobs, pg-boss or HTTP routes.
 *
 * It works in chunks of a few times the delivery concurrency (see
 * `dispatchChunkSize`): each chunk is claimed (FOR UPDATE SKIP LOCKED, leased
 * to this run), sent, and its outcomes recorded in one statement before the
 * next is claimed, so a lease only has to outlive one chunk and a stopped job
 * stops between chunks.
 */
import type { Pool } from '../db/pool.ts';
import {
  claimMessages,
  recordDeliveryOutcomes,
  releaseExpiredMessageLeases,
  releaseUntriedMessages,
} from '../db/sqlc/messages_sql.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { DeliveryGate } from './outbound-rate-limit.ts';
import { type BackoffOptions, type DeliveryDecision, decideOutcome } from './retry-policy.ts';
import type { SentCache } from './sent-cache.ts';
import type { DeliveryClient, DeliveryResult } from './webhook-client.ts';

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
}

export interface DispatchRequest {
  /** Identifies the run; part of the lease owner. */
  runId: string;
  /** At most this many messages are claimed. */
  batchSize: number;
  /** Checked before every claim: an aborted run claims nothing more. */
  signal: AbortSignal;
}

export interface DispatchSummary {
  claimed: number;
  sent: number;
  retried: number;
  failed: number;
  /** Expired `sending` leases (a crashed pod's messages) returned to pending first. */
  recovered: number;
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
  const summary: DispatchSummary = { claimed: 0, sent: 0, retried: 0, failed: 0, recovered: 0 };
  summary.recovered = (await releaseExpiredMessageLeases(pool)).length;
  const owner = `${settings.instanceId}/${request.runId}`;
  let remaining = request.batchSize;
  while (remaining > 0 && !request.signal.aborted) {
    let wanted = Math.min(remaining, dispatchChunkSize(settings));
    const permit = gate ? await gate.acquire(wanted, request.signal) : undefined;
    if (permit) wanted = permit.granted;
    if (wanted === 0) break;
    const chunk = await claimMessages(pool, { leaseSeconds: settings.messageLeaseSeconds, owner, maxMessages: wanted });
    if (chunk.length === 0) break;
    if (permit?.heldBackBy) metrics.deliveriesHeldBack.inc({ reason: permit.heldBackBy }, chunk.length);
    remaining -= chunk.length;
    summary.claimed += chunk.length;
    chunk.sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || a.id.localeCompare(b.id));
    const tried = await mapWithConcurrency(chunk, settings.concurrency, async (message) => {
      // Paused by a Retry-After (ours or, seen at this chunk's start, another pod's): send no more.
      if (gate?.paused()) return undefined;
      const started = performance.now();
      // deliver() reports failures as results; a throw is a bug, treated as transient so nothing is lost.
      const result: DeliveryResult = await delivery
        .deliver({ id: message.id, to: message.recipient, content: message.content })
        .catch((error: unknown) => ({ outcome: 'transient', error: `delivery crashed: ${String(error)}` }));
      metrics.webhookDuration.observe(
        { status_class: statusClass(result.httpStatus) },
        (performance.now() - started) / 1000,
      );
      if (gate && result.outcome === 'transient' && result.retryAfterMs !== undefined) {
        if (result.httpStatus === 429 || result.httpStatus === 503) await gate.pause(result.retryAfterMs);
      }
      return decideOutcome(result, message.attempts, settings.maxAttempts, settings.backoff);
    });
    const untried = chunk.filter((_, index) => tried[index] === undefined).map((message) => message.id);
    if (untried.length > 0) await releaseUntriedMessages(pool, { ids: untried, owner });
    const results = tried.filter((outcome): outcome is DeliveryDecision => outcome !== undefined);
    chunk.splice(0, chunk.length, ...chunk.filter((_, index) => tried[index] !== undefined));
    await recordDeliveryOutcomes(pool, {
      ids: chunk.map((message) => message.id),
      statuses: results.map((outcome) => outcome.status),
      externalMessageIds: results.map((outcome) => (outcome.status === 'sent' ? outcome.externalMessageId : '')),
      errors: results.map((outcome) => (outcome.status === 'sent' ? '' : outcome.error)),
      retryDelaysMs: results.map((outcome) => (outcome.status === 'pending' ? Math.round(outcome.retryDelayMs) : 0)),
      owner,
    });
    const sentAt = new Date().toISOString();
    const sent = [];
    for (const [index, outcome] of results.entries()) {
      const message = chunk[index]!;
      if (outcome.status === 'sent') {
        sent.push({ id: message.id, externalMessageId: outcome.externalMessageId, sentAt });
      } else if (outcome.status === 'pending') {
        summary.retried += 1;
        metrics.messagesRetried.inc();
        logger.warn(
          { messageId: message.id, attempt: message.attempts, error: outcome.error },
          'delivery failed; will retry',
        );
      } else {
        summary.failed += 1;
        metrics.messagesFailed.inc({ reason: outcome.reason });
        logger.error({ messageId: message.id, attempt: message.attempts, error: outcome.error }, 'message failed');
      }
    }
    summary.sent += sent.length;
    metrics.messagesSent.inc(sent.length);
    await cache.remember(sent);
  }
  return summary;
}

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
