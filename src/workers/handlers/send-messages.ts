import type { Pool } from '../../db/pool.ts';
import { claimMessages, recordDeliveryOutcomes, releaseExpiredMessageLeases } from '../../db/sqlc/messages_sql.ts';
import { decideOutcome } from '../../messages/retry-policy.ts';
import type { SentCache } from '../../messages/sent-cache.ts';
import type { DeliveryClient, DeliveryResult } from '../../messages/webhook-client.ts';
import type { Metrics } from '../../observability/metrics.ts';
import type { JobHandler, RunContext, RunSummary } from '../handler.ts';

export interface SendMessagesSettings {
  instanceId: string;
  messageLeaseSeconds: number;
  /** Deliveries in flight at once within one run. */
  concurrency: () => number;
  maxAttempts: () => number;
  /** The webhook timeout; with the lease it bounds how many sends one lane does per chunk. */
  timeoutMs: () => number;
  backoff: () => { baseMs: number; maxMs: number };
}

/**
 * The send-messages handler: sends up to the job's batch size of the oldest
 * due messages. It works in chunks of a few times the delivery concurrency
 * (see chunkSize):
 * each chunk is claimed (FOR UPDATE SKIP LOCKED, leased to this run), sent,
 * and its outcomes recorded in one statement before the next is claimed, so
 * a lease only has to outlive one chunk and a stopped job stops between chunks.
 */
export function sendMessagesHandler(
  pool: Pool,
  delivery: () => DeliveryClient,
  cache: () => SentCache,
  settings: SendMessagesSettings,
  metrics: Metrics,
): JobHandler {
  return {
    async run(context: RunContext): Promise<RunSummary> {
      const summary = { claimed: 0, sent: 0, retried: 0, failed: 0, recovered: 0 };
      summary.recovered = (await releaseExpiredMessageLeases(pool)).length;
      const owner = `${settings.instanceId}/${context.runId}`;
      let remaining = context.batchSize;
      while (remaining > 0 && !context.signal.aborted) {
        const chunk = await claimMessages(pool, {
          leaseSeconds: settings.messageLeaseSeconds,
          owner,
          maxMessages: Math.min(remaining, chunkSize(settings)),
        });
        if (chunk.length === 0) break;
        remaining -= chunk.length;
        summary.claimed += chunk.length;
        chunk.sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || a.id.localeCompare(b.id));
        const client = delivery();
        const results = await mapWithConcurrency(chunk, settings.concurrency(), async (message) => {
          const started = performance.now();
          // deliver() reports failures as results; a throw is a bug, treated as transient so nothing is lost.
          const result: DeliveryResult = await client
            .deliver({ id: message.id, to: message.recipient, content: message.content })
            .catch((error: unknown) => ({ outcome: 'transient', error: `delivery crashed: ${String(error)}` }));
          metrics.webhookDuration.observe(
            { status_class: statusClass(result.httpStatus) },
            (performance.now() - started) / 1000,
          );
          return decideOutcome(result, message.attempts, settings.maxAttempts(), settings.backoff());
        });
        await recordDeliveryOutcomes(pool, {
          ids: chunk.map((message) => message.id),
          statuses: results.map((outcome) => outcome.status),
          externalMessageIds: results.map((outcome) => (outcome.status === 'sent' ? outcome.externalMessageId : '')),
          errors: results.map((outcome) => (outcome.status === 'sent' ? '' : outcome.error)),
          retryDelaysMs: results.map((outcome) =>
            outcome.status === 'pending' ? Math.round(outcome.retryDelayMs) : 0,
          ),
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
            context.logger.warn(
              { messageId: message.id, attempt: message.attempts, error: outcome.error },
              'delivery failed; will retry',
            );
          } else {
            summary.failed += 1;
            metrics.messagesFailed.inc({ reason: outcome.reason });
            context.logger.error(
              { messageId: message.id, attempt: message.attempts, error: outcome.error },
              'message failed',
            );
          }
        }
        summary.sent += sent.length;
        metrics.messagesSent.inc(sent.length);
        await cache().remember(sent);
      }
      return summary;
    },
  };
}

/**
 * Messages claimed at once: each of the `concurrency` lanes sends at most as
 * many one after another as fit, at the webhook timeout each, in half the
 * lease (the configuration guarantees at least one), and at most 4.
 */
function chunkSize(settings: SendMessagesSettings): number {
  const perLane = Math.floor((settings.messageLeaseSeconds * 1000) / (2 * settings.timeoutMs()));
  return settings.concurrency() * Math.min(4, Math.max(1, perLane));
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
