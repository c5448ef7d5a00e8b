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
import { recordDeliveryOutcomes } from '../db/sqlc/messages_sql.ts';
import { retryUntilDone } from '../lib/retry.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { logFieldsOf, type TraceContext } from '../observability/tracing.ts';
import type { AttemptRecord } from './attempt-history.ts';
import type { DeliveryDecision } from './backoff.ts';
import type { ClaimedMessage } from './claim.ts';
import { disabledSentCache, type SentCache, type SentEntry } from './sent-cache.ts';

export interface ChunkOutcomes {
  /** The lease owner that claimed the chunk. */
  owner: string;
  /**
   * Every message of the chunk: what to do with it (no decision: claimed but
   * not really tried, breaker open, shutdown abort, failed probe, so handed
   * back uncounted), and the attempt made, if one was (its history row).
   */
  items: Array<{ id: string; decision?: DeliveryDecision; attempt?: AttemptRecord }>;
}

export interface OutcomeWriteOptions {
  /** Give up (and log what is lost to the lease) when this aborts; the shutdown deadline. */
  signal?: AbortSignal;
  logger: Logger;
}

/**
 * Writes `outcomes` and the attempts behind them in one statement
 * (RecordDeliveryOutcomes), retrying it until it lands or `signal` aborts.
 * Resolves with the database's `sent_at` of every message recorded as sent.
 * Rejects only when it gave up: those messages keep their lease and are sent
 * again (same id) after it expires.
 */
export async function writeChunkOutcomes(
  pool: Pool,
  outcomes: ChunkOutcomes,
  options: OutcomeWriteOptions,
): Promise<Map<string, Date>> {
  const { owner, items } = outcomes;
  const { logger, signal } = options;
  const sentAt = new Map<string, Date>();
  if (items.length === 0) return sentAt;
  // One JSON text for the whole chunk (the statement's `outcomes`); null or absent fields are SQL null.
  const args = {
    owner,
    outcomes: JSON.stringify(
      items.map(({ id, decision, attempt }) => ({
        id,
        status: decision?.status ?? 'untried',
        external_message_id: decision?.status === 'sent' ? storable(decision.externalMessageId) : null,
        error: decision && decision.status !== 'sent' ? storable(decision.error) : null,
        retry_delay_ms: decision?.status === 'pending' ? Math.round(decision.retryDelayMs) : null,
        ...(attempt && {
          attempt_outcome: attempt.outcome,
          started_at: attempt.startedAt,
          duration_ms: attempt.durationMs,
          http_status: attempt.httpStatus,
          attempt_error: attempt.error === null ? null : storable(attempt.error),
          response_excerpt: attempt.responseExcerpt === null ? null : storable(attempt.responseExcerpt),
        }),
      })),
    ),
  };
  const rows = await retryUntilDone(() => recordDeliveryOutcomes(pool, args), {
    signal,
    onRetry: (error, attempt) => {
      if (attempt === 1 || attempt % 20 === 0)
        logger.warn(
          { err: error, messages: items.length, attempt },
          'could not record delivery outcomes; keeping them and retrying',
        );
    },
  });
  for (const row of rows) if (row.status === 'sent' && row.sentAt) sentAt.set(row.id, row.sentAt);
  return sentAt;
}

/**
 * `text` as PostgreSQL text can hold it: a lone UTF-16 surrogate (a webhook's
 * `"messageId": "\ud800"`, a cut made in the middle of a pair) and NUL
 * become U+FFFD. Either one in the outcomes' JSON would fail the write for
 * good, and with it the chunk's outcomes, which are retried until they land.
 */
function storable(text: string): string {
  const wellFormed = text.isWellFormed() ? text : text.toWellFormed();
  return wellFormed.includes('\u0000') ? wellFormed.replaceAll('\u0000', '\uFFFD') : wellFormed;
}

/** A claimed chunk after sending: per message (same order), what to do with it, or undefined when it goes back untried. */
export interface SentChunk {
  messages: ClaimedMessage[];
  decisions: Array<DeliveryDecision | undefined>;
  /** Per message (same order), the attempt made, if one was. */
  attempts: Array<AttemptRecord | undefined>;
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
 * Writes the chunk's outcomes and attempts (see writeChunkOutcomes), adds them to `totals`,
 * counts `messagesSent`, `messagesRetried` and `messagesFailed{reason}`, logs
 * 'delivery failed; will retry' (warn) and 'message failed' (error) per
 * message, and caches the sent ones with the database's `sent_at`.
 * Resolves with the number of messages handed back untried.
 */
export async function settle(chunk: SentChunk, parts: SettleParts, totals: SettleTotals): Promise<number> {
  const { metrics, logger } = parts;
  const items: ChunkOutcomes['items'] = chunk.messages.map((message, index) => ({
    id: message.id,
    decision: chunk.decisions[index],
    attempt: chunk.attempts[index],
  }));
  const sentAt = await writeChunkOutcomes(
    parts.pool,
    { owner: parts.owner, items },
    { signal: parts.deadline, logger },
  );
  const untried = chunk.decisions.filter((decision) => decision === undefined).length;
  totals.handedBack += untried;
  const sent: SentEntry[] = [];
  let sentCount = 0;
  // A log line's fields are built only when it is written: a delivered message is logged at debug.
  const fieldsOf = (message: ClaimedMessage) => {
    const trace = chunk.traces?.get(message.id);
    return { messageId: message.id, attempt: message.attempts, ...(trace ? logFieldsOf(trace) : {}) };
  };
  const debug = logger.isLevelEnabled('debug');
  const caching = parts.cache !== disabledSentCache;
  for (const [index, decision] of chunk.decisions.entries()) {
    const message = chunk.messages[index]!;
    if (decision?.status === 'sent') {
      if (debug)
        logger.debug({ ...fieldsOf(message), externalMessageId: decision.externalMessageId }, 'message delivered');
      const at = caching ? sentAt.get(message.id) : undefined;
      if (at) sent.push({ id: message.id, externalMessageId: decision.externalMessageId, sentAt: at.toISOString() });
      sentCount += 1;
      continue;
    }
    const fields = fieldsOf(message);
    if (decision?.status === 'pending') {
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
  return untried;
}
