/**
 * Settle, the last stage of the delivery loop: records what happened to one
 * claimed chunk, keeping at it until the database takes it, then counts it
 * (summary, metrics), logs the retries and failures, and caches the sent
 * messages.
 *
 * The write is kept and retried until the database takes it. A delivery the webhook accepted is a fact: if the write
 * of its outcome fails (the database restarting, a failover), the outcome is
 * kept in memory and the write retried, so a database that is back within the
 * message lease sees the message `sent` and nobody sends it again.
 */
import type { Pool } from '../db/pool.ts';
import { recordDeliveryOutcomes, releaseUntriedMessages } from '../db/sqlc/messages_sql.ts';
import { retryUntilDone } from '../lib/retry.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { logFieldsOf, type TraceContext } from '../observability/tracing.ts';
import type { DeliveryDecision } from './backoff.ts';
import type { ClaimedMessage } from './claim.ts';
import type { SentCache, SentEntry } from './sent-cache.ts';

export interface ChunkOutcomes {
  /** The lease owner that claimed the chunk. */
  owner: string;
  /** Messages that were tried, with what to do with each. */
  decided: Array<{ id: string; decision: DeliveryDecision }>;
  /** Messages claimed but not really tried (breaker open, shutdown abort, failed probe): handed back uncounted. */
  untried: string[];
}

export interface OutcomeWriteOptions {
  /** Give up (and log what is lost to the lease) when this aborts; the shutdown deadline. */
  signal?: AbortSignal;
  logger: Logger;
}

/**
 * Writes `outcomes` (one statement for the decided, one for the untried),
 * retrying each until it lands or `signal` aborts. Resolves with the
 * database's `sent_at` of every message recorded as sent. Rejects only when it
 * gave up: those messages keep their lease and are sent again (same id) after
 * it expires.
 */
export async function writeChunkOutcomes(
  pool: Pool,
  outcomes: ChunkOutcomes,
  options: OutcomeWriteOptions,
): Promise<Map<string, Date>> {
  const { owner, decided, untried } = outcomes;
  const { logger, signal } = options;
  const retry = <T>(what: string, write: () => Promise<T>) =>
    retryUntilDone(write, {
      signal,
      onRetry: (error, attempt) => {
        if (attempt === 1 || attempt % 20 === 0)
          logger.warn(
            { err: error, messages: what === 'outcomes' ? decided.length : untried.length, attempt },
            `could not record delivery ${what}; keeping them and retrying`,
          );
      },
    });
  const sentAt = new Map<string, Date>();
  if (decided.length > 0) {
    const rows = await retry('outcomes', () =>
      recordDeliveryOutcomes(pool, {
        ids: decided.map((item) => item.id),
        statuses: decided.map((item) => item.decision.status),
        externalMessageIds: decided.map((item) =>
          item.decision.status === 'sent' ? item.decision.externalMessageId : '',
        ),
        errors: decided.map((item) => (item.decision.status === 'sent' ? '' : item.decision.error)),
        retryDelaysMs: decided.map((item) =>
          item.decision.status === 'pending' ? Math.round(item.decision.retryDelayMs) : 0,
        ),
        owner,
      }),
    );
    for (const row of rows) if (row.status === 'sent' && row.sentAt) sentAt.set(row.id, row.sentAt);
  }
  if (untried.length > 0) await retry('hand-backs', () => releaseUntriedMessages(pool, { ids: untried, owner }));
  return sentAt;
}

/** A claimed chunk after sending: per message (same order), what to do with it, or undefined when it goes back untried. */
export interface SentChunk {
  messages: ClaimedMessage[];
  decisions: Array<DeliveryDecision | undefined>;
  /** Each tried message's attempt span: its delivery logs carry that `traceId` and `spanId`. */
  traces?: ReadonlyMap<string, TraceContext>;
}

/** The run's running totals that settling adds to. */
export interface SettleTotals {
  sent: number;
  retried: number;
  failed: number;
  handedBack: number;
}

export interface SettleParts {
  pool: Pool;
  cache: SentCache;
  metrics: Metrics;
  logger: Logger;
  /** The lease owner that claimed the chunk. */
  owner: string;
  /** The shutdown deadline: the outcome write gives up when it passes (the lease then brings the messages back). */
  deadline: AbortSignal;
}

/**
 * Writes the chunk's outcomes (see writeChunkOutcomes), adds them to `totals`,
 * counts `messagesSent`, `messagesRetried` and `messagesFailed{reason}`, logs
 * 'delivery failed; will retry' (warn) and 'message failed' (error) per
 * message, and caches the sent ones with the database's `sent_at`.
 * Resolves with the number of messages handed back untried.
 */
export async function settle(chunk: SentChunk, parts: SettleParts, totals: SettleTotals): Promise<number> {
  const { metrics, logger } = parts;
  const decided: ChunkOutcomes['decided'] = [];
  const untried: string[] = [];
  for (const [index, decision] of chunk.decisions.entries()) {
    const id = chunk.messages[index]!.id;
    if (decision) decided.push({ id, decision });
    else untried.push(id);
  }
  const sentAt = await writeChunkOutcomes(
    parts.pool,
    { owner: parts.owner, decided, untried },
    { signal: parts.deadline, logger },
  );
  totals.handedBack += untried.length;
  const sent: SentEntry[] = [];
  let sentCount = 0;
  for (const [index, decision] of chunk.decisions.entries()) {
    const message = chunk.messages[index]!;
    const trace = chunk.traces?.get(message.id);
    const fields = { messageId: message.id, attempt: message.attempts, ...(trace ? logFieldsOf(trace) : {}) };
    if (decision?.status === 'sent') {
      logger.debug({ ...fields, externalMessageId: decision.externalMessageId }, 'message delivered');
      const at = sentAt.get(message.id);
      if (at) sent.push({ id: message.id, externalMessageId: decision.externalMessageId, sentAt: at.toISOString() });
      sentCount += 1;
    } else if (decision?.status === 'pending') {
      totals.retried += 1;
      metrics.messagesRetried.inc();
      logger.warn({ ...fields, error: decision.error }, 'delivery failed; will retry');
    } else if (decision?.status === 'failed') {
      totals.failed += 1;
      metrics.messagesFailed.inc({ reason: decision.reason });
      logger.error({ ...fields, error: decision.error }, 'message failed');
    }
  }
  totals.sent += sentCount;
  metrics.messagesSent.inc(sentCount);
  await parts.cache.remember(sent);
  return untried.length;
}
