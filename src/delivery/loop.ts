/**
 * The delivery loop: claim -> send -> settle, chunk after chunk, until the
 * batch is used up, the run is told to stop, or nothing is left to claim.
 *
 * - claim: due messages promoted, then claimed FOR UPDATE SKIP LOCKED and
 *   leased to this run (claim.ts), at most a chunk of a few times the
 *   concurrency (see deliveryChunkSize), sorted back into claim order;
 * - send: each message POSTed to the webhook, its result turned into a
 *   decision (sent, retry after a backoff, failed; backoff.ts);
 * - settle: the chunk's outcomes written in one statement, kept and retried
 *   until the database takes them, then counted, logged and cached (settle.ts).
 *
 * So a lease only has to outlive one chunk, and a stopped job stops between
 * chunks. Everything else (circuit breaker, shared rate limit and Retry-After
 * pause, shutdown hand-back, concurrency) is a policy the loop asks at fixed
 * points (policy.ts); nothing here knows about jobs, pg-boss or HTTP routes.
 */
import type { Pool } from '../db/pool.ts';
import { releaseExpiredMessageLeases } from '../db/sqlc/messages_sql.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { type AttemptOutcome, type AttemptRecord, attemptRecord, outcomeOf } from './attempt-history.ts';
import { type DeliveryDecision, decideOutcome } from './backoff.ts';
import { type ClaimedMessage, claimDueMessages } from './claim.ts';
import type { DeliveryPolicy, DeliveryPolicyFactory } from './policy.ts';
import type { RunSettings } from './run-settings.ts';
import type { SentCache } from './sent-cache.ts';
import { type SentChunk, settle } from './settle.ts';
import type { DeliveryClient, DeliveryResult } from './webhook.ts';

/** One delivery run, as the `send-messages` job asks for it. */
export interface DeliveryRequest {
  /** Identifies the run. */
  runId: string;
  /**
   * The run's execution fence (see BeginJobExecution): part of the lease owner,
   * and once it is superseded nothing more is claimed. Absent outside job runs.
   */
  executionId?: string;
  /** At most this many messages are claimed (handed-back ones not counted). */
  batchSize: number;
  /** Checked before every claim: an aborted run claims nothing more. */
  signal: AbortSignal;
  /**
   * The shutdown deadline: aborts webhook requests in flight; their messages
   * (and any not yet tried) are handed back with the same id, the attempt not counted.
   */
  deadline?: AbortSignal;
  /** Where the run's retries and failures are logged; default: the loop's `parts.logger`. */
  logger?: Logger;
}

/** Message counts of one run. */
export interface DeliverySummary {
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

/** What the loop works with; `client` is the one current at the run's start. */
export interface LoopParts {
  pool: Pool;
  client: DeliveryClient;
  cache: SentCache;
  metrics: Metrics;
  logger: Logger;
  /** Asked in this order at every stage (policy.ts). */
  policies: readonly DeliveryPolicyFactory[];
}

/** One run's state, shared by its stages. */
interface Run {
  request: DeliveryRequest;
  settings: RunSettings;
  parts: LoopParts;
  policies: DeliveryPolicy[];
  /** `${instanceId}/${executionId ?? runId}`: who holds the lease of what this run claims. */
  owner: string;
  deadline: AbortSignal;
}

/**
 * Sends up to `request.batchSize` of the oldest due pending messages
 * (created_at, id), after returning expired leases to pending. Never throws
 * for a delivery failure: those become retries or failures on the message.
 * Throws only when the database cannot be reached.
 */
export async function deliverBatch(
  request: DeliveryRequest,
  settings: RunSettings,
  parts: LoopParts,
): Promise<DeliverySummary> {
  const summary: DeliverySummary = { claimed: 0, sent: 0, retried: 0, failed: 0, recovered: 0, handedBack: 0 };
  summary.recovered = (await releaseExpiredMessageLeases(parts.pool)).length;
  const deadline = request.deadline ?? new AbortController().signal;
  const scope = { signal: request.signal, deadline, settings, metrics: parts.metrics };
  const run: Run = {
    request,
    settings,
    parts,
    policies: parts.policies.map((make) => make(scope)),
    owner: `${settings.instanceId}/${request.executionId ?? request.runId}`,
    deadline,
  };
  const settleParts = { ...parts, logger: request.logger ?? parts.logger, owner: run.owner, deadline };
  let remaining = request.batchSize;
  while (remaining > 0 && !request.signal.aborted) {
    const chunk = await claimAndSend(run, remaining);
    if (!chunk) break;
    summary.claimed += chunk.messages.length;
    const handedBack = await settle(chunk, settleParts, summary);
    // Handed-back messages were not worked on: they do not use up the batch.
    remaining -= chunk.messages.length - handedBack;
  }
  return summary;
}

/** Claims one chunk and sends it; undefined when the run ends here. Every policy closes the chunk, whatever happens. */
async function claimAndSend(run: Run, remaining: number): Promise<SentChunk | undefined> {
  try {
    const messages = await claim(run, remaining);
    if (!messages) return undefined;
    const sent = await Promise.all(messages.map((message) => send(run, message)));
    return { messages, decisions: sent.map((one) => one.decision), attempts: sent.map((one) => one.attempt) };
  } finally {
    for (const policy of run.policies) policy.endChunk?.();
  }
}

/** The policies narrow `wanted` in turn (any may wait, 0 ends the run); then the claim, in claim order. */
async function claim(run: Run, remaining: number): Promise<ClaimedMessage[] | undefined> {
  let wanted = remaining;
  for (const policy of run.policies) {
    if (policy.beforeClaim) wanted = await policy.beforeClaim(wanted);
    if (wanted <= 0) return undefined;
  }
  const messages = await claimDueMessages(run.parts.pool, {
    leaseSeconds: run.settings.messageLeaseSeconds,
    owner: run.owner,
    executionId: run.request.executionId ?? null,
    maxMessages: wanted,
  });
  if (messages.length === 0) return undefined;
  for (const policy of run.policies) policy.afterClaim?.(messages.length);
  messages.sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || a.id.localeCompare(b.id));
  return messages;
}

/** What became of one claimed message: no decision hands it back; an attempt, if one was made, goes in its history. */
interface Sent {
  decision?: DeliveryDecision;
  attempt?: AttemptRecord;
}

/** One message, once every policy lets it go: its decision and attempt, or neither to hand it back untried. */
async function send(run: Run, message: ClaimedMessage): Promise<Sent> {
  const passed: DeliveryPolicy[] = [];
  try {
    for (const policy of run.policies) {
      if (policy.beforeSend && !(await policy.beforeSend(message))) return {};
      passed.push(policy);
    }
    return await attempt(run, message);
  } finally {
    for (const policy of passed) policy.afterSend?.();
  }
}

/**
 * POSTs the message and decides what becomes of it, unless a policy voids the
 * attempt (recorded `aborted`) or hands the message back (recorded `retry`,
 * not counted). The attempt is recorded either way: it was made.
 */
async function attempt(run: Run, message: ClaimedMessage): Promise<Sent> {
  const startedAt = new Date();
  const started = performance.now();
  // deliver() reports failures as results; a throw is a bug, treated as transient so nothing is lost.
  const result: DeliveryResult = await run.parts.client
    .deliver({ id: message.id, to: message.recipient, content: message.content }, run.deadline)
    .catch((error: unknown) => ({ outcome: 'transient', error: `delivery crashed: ${String(error)}` }));
  const seconds = (performance.now() - started) / 1000;
  const record = (outcome: AttemptOutcome, note?: string) =>
    attemptRecord(result, outcome, { startedAt, durationMs: seconds * 1000 }, note);
  if (run.policies.some((policy) => policy.voidsAttempt?.(result))) return { attempt: record('aborted') };
  run.parts.metrics.webhookDuration.observe({ status_class: statusClass(result.httpStatus) }, seconds);
  let handBack = false;
  for (const policy of run.policies) if ((await policy.afterAttempt?.(result)) === 'hand-back') handBack = true;
  if (handBack) return { attempt: record('retry', 'handed back, not counted') };
  const { maxAttempts, backoff } = run.settings;
  const decision = decideOutcome(result, message.attempts, maxAttempts, backoff);
  return { decision, attempt: record(outcomeOf(decision)) };
}

function statusClass(status: number | undefined): string {
  if (status === undefined) return 'error';
  return status === 0 ? 'dry-run' : `${Math.floor(status / 100)}xx`;
}
