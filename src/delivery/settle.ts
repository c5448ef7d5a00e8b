/**
 * Records what happened to one claimed chunk, and keeps trying until the
 * database takes it. A delivery the webhook accepted is a fact: if the write
 * of its outcome fails (the database restarting, a failover), the outcome is
 * kept in memory and the write retried, so a database that is back within the
 * message lease sees the message `sent` and nobody sends it again.
 */
import type { Pool } from '../db/pool.ts';
import { recordDeliveryOutcomes, releaseUntriedMessages } from '../db/sqlc/messages_sql.ts';
import { retryUntilDone } from '../lib/retry.ts';
import type { Logger } from '../observability/logger.ts';
import type { DeliveryDecision } from './backoff.ts';

export interface ChunkOutcomes {
  /** The lease owner that claimed the chunk. */
  owner: string;
  /** Messages that were tried, with what to do with each. */
  decided: Array<{ id: string; decision: DeliveryDecision }>;
  /** Messages claimed but not really tried (breaker open, shutdown abort, failed probe): handed back uncounted. */
  untried: string[];
}

export interface OutcomeWriterOptions {
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
  options: OutcomeWriterOptions,
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
