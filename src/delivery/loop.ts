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
import { formatTraceparent } from '../observability/trace-context.ts';
import { type TraceContext, type Tracing, untraced } from '../observability/tracing.ts';
import { type AttemptOutcome, type AttemptRecord, attemptRecord, outcomeOf } from './attempt-history.ts';
import { type DeliveryDecision, decideOutcome } from './backoff.ts';
import { type ClaimedMessage, claimDueMessages } from './claim.ts';
import type { DeliveryPolicy, DeliveryPolicyFactory } from './policy.ts';
import type { RunSettings } from './run-settings.ts';
import type { SentCache } from './sent-cache.ts';
import { type SentChunk, settle } from './settle.ts';
import { claimed, endAttemptSpan, startAttemptSpan, startClaimSpan } from './trace.ts';
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
  /** The run's span: each claim is its child. Absent: each claim starts a trace. */
  trace?: TraceContext;
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
  /** Spans of the claims and attempts (trace.ts); default: untraced (ids for `traceparent`, nothing exported). */
  tracing?: Tracing;
}

/** One pipeline's state, shared by its stages; each pipeline of a run has its own policies. */
interface Run {
  request: DeliveryRequest;
  settings: RunSettings;
  parts: LoopParts;
  policies: DeliveryPolicy[];
  /** `${instanceId}/${executionId ?? runId}`: who holds the lease of what this run claims. */
  owner: string;
  deadline: AbortSignal;
  tracing: Tracing;
}

/**
 * Chunk pipelines per run. Each is claim -> send -> settle in turn, with its
 * own policy state, as two runs of one pod would be; together they keep the
 * webhook busy while the other pipeline claims or settles, where one pipeline
 * leaves it idle for both. Their claims take turns (see `claimTurns`), so the
 * chunks queue for the pod's concurrency gate in claim order, and each claims
 * half of what the concurrency policy allows a run (deliveryChunkSize), so a
 * run holds no more messages at once than one pipeline did.
 */
export const PIPELINES_PER_RUN = 2;

/** What the pipelines of one run share: the batch left to claim, and whether the run ended. */
interface RunBudget {
  /** Messages the run may still claim (handed-back ones come back to it). */
  remaining: number;
  /** A claim found nothing, a policy ended the run, or a pipeline failed: claim nothing more. */
  ended: boolean;
  /** Runs `claim` after every claim started before it has queued its chunk for sending. */
  claimTurns: <T>(claim: () => Promise<T>) => Promise<T>;
}

/**
 * Sends up to `request.batchSize` of the oldest due pending messages
 * (created_at, id), after returning expired leases to pending. Never throws
 * for a delivery failure: those become retries or failures on the message.
 * Throws only when the database cannot be reached (after every pipeline has
 * settled what it sent).
 */
export async function deliverBatch(
  request: DeliveryRequest,
  settings: RunSettings,
  parts: LoopParts,
): Promise<DeliverySummary> {
  const summary: DeliverySummary = { claimed: 0, sent: 0, retried: 0, failed: 0, recovered: 0, handedBack: 0 };
  summary.recovered = (await releaseExpiredMessageLeases(parts.pool)).length;
  const deadline = request.deadline ?? new AbortController().signal;
  const pipelines = request.batchSize > 1 ? PIPELINES_PER_RUN : 1;
  const scope = { signal: request.signal, deadline, settings, metrics: parts.metrics, pipelines };
  const owner = `${settings.instanceId}/${request.executionId ?? request.runId}`;
  const budget: RunBudget = { remaining: request.batchSize, ended: false, claimTurns: takingTurns() };
  const outcomes = await Promise.allSettled(
    Array.from({ length: pipelines }, () =>
      pipeline(
        {
          request,
          settings,
          parts,
          policies: parts.policies.map((make) => make(scope)),
          owner,
          deadline,
          tracing: parts.tracing ?? untraced,
        },
        budget,
        summary,
      ),
    ),
  );
  const failure = outcomes.find((outcome) => outcome.status === 'rejected');
  if (failure) throw failure.reason;
  return summary;
}

/** One pipeline: chunk after chunk until the run's budget is used up or the run ends. */
async function pipeline(run: Run, budget: RunBudget, summary: DeliverySummary): Promise<void> {
  const { request, parts } = run;
  const settleParts = { ...parts, logger: request.logger ?? parts.logger, owner: run.owner, deadline: run.deadline };
  try {
    while (budget.remaining > 0 && !budget.ended && !request.signal.aborted) {
      const chunk = await claimAndSend(run, budget);
      if (!chunk) {
        budget.ended = true;
        break;
      }
      summary.claimed += chunk.messages.length;
      const handedBack = await settle(chunk, settleParts, summary);
      // Handed-back messages were not worked on: they do not use up the batch.
      budget.remaining += handedBack;
    }
  } catch (error) {
    budget.ended = true;
    throw error;
  }
}

/** A lock in call order: each call runs after the previous one settled. */
function takingTurns(): RunBudget['claimTurns'] {
  let last: Promise<unknown> = Promise.resolve();
  return (claim) => {
    const result = last.then(claim);
    last = result.catch(() => {});
    return result;
  };
}

/**
 * Claims one chunk (in the run's claim turn) and sends it; undefined when the
 * run ends here. Every policy closes the chunk, whatever happens.
 */
async function claimAndSend(run: Run, budget: RunBudget): Promise<SentChunk | undefined> {
  try {
    const started = await budget.claimTurns(async () => {
      if (budget.ended || budget.remaining <= 0) return undefined;
      const chunk = await claim(run, budget.remaining);
      if (!chunk) return undefined;
      budget.remaining -= chunk.messages.length;
      const traces = new Map<string, TraceContext>();
      // Every message asks for its slot now, before the turn passes: the gate serves chunks in claim order.
      const sends = chunk.messages.map((message) => send(run, message, chunk.trace, traces));
      return { messages: chunk.messages, sends, traces };
    });
    if (!started) return undefined;
    const sent = await Promise.all(started.sends);
    return {
      messages: started.messages,
      decisions: sent.map((one) => one.decision),
      attempts: sent.map((one) => one.attempt),
      traces: started.traces,
    };
  } finally {
    for (const policy of run.policies) policy.endChunk?.();
  }
}

/**
 * The policies narrow `wanted` in turn (any may wait, 0 ends the run); then
 * the claim (in a span of its own), in claim order, with the claim span's context.
 */
async function claim(
  run: Run,
  remaining: number,
): Promise<{ messages: ClaimedMessage[]; trace: TraceContext } | undefined> {
  let wanted = remaining;
  for (const policy of run.policies) {
    if (policy.beforeClaim) wanted = await policy.beforeClaim(wanted);
    if (wanted <= 0) return undefined;
  }
  const span = startClaimSpan(run.tracing, run.request.trace, wanted);
  const messages = await claimDueMessages(run.parts.pool, {
    leaseSeconds: run.settings.messageLeaseSeconds,
    owner: run.owner,
    executionId: run.request.executionId ?? null,
    maxMessages: wanted,
  }).catch((error: unknown) => {
    span.fail(`claim failed: ${String(error)}`);
    span.end();
    throw error;
  });
  claimed(run.tracing, span, messages);
  if (messages.length === 0) return undefined;
  for (const policy of run.policies) policy.afterClaim?.(messages.length);
  // Already in claim order (created_at, id, to the microsecond: see PlanClaimInIndexOrder), so the messages of
  // one batch go out in the request's order.
  return { messages, trace: span.context };
}

/** What became of one claimed message: no decision hands it back; an attempt, if one was made, goes in its history. */
interface Sent {
  decision?: DeliveryDecision;
  attempt?: AttemptRecord;
}

/**
 * One message, once every policy lets it go: its decision and attempt, or
 * neither to hand it back untried. The attempt's span context goes into `traces`.
 */
async function send(
  run: Run,
  message: ClaimedMessage,
  claimTrace: TraceContext,
  traces: Map<string, TraceContext>,
): Promise<Sent> {
  const passed: DeliveryPolicy[] = [];
  try {
    for (const policy of run.policies) {
      if (policy.beforeSend) {
        const answer = policy.beforeSend(message);
        // Awaited only when it is a promise: an `await` of a plain value still costs a microtask turn.
        if (!(answer instanceof Promise ? await answer : answer)) return {};
      }
      passed.push(policy);
    }
    return await attempt(run, message, claimTrace, traces);
  } finally {
    for (const policy of passed) policy.afterSend?.();
  }
}

/**
 * POSTs the message (in a client span continuing the message's trace, whose
 * context the `traceparent` header carries) and decides what becomes of it,
 * unless a policy voids the attempt (recorded `aborted`) or hands the message
 * back (recorded `retry`, not counted). The attempt is recorded either way: it was made.
 */
async function attempt(
  run: Run,
  message: ClaimedMessage,
  claimTrace: TraceContext,
  traces: Map<string, TraceContext>,
): Promise<Sent> {
  const startedAt = new Date();
  const span = startAttemptSpan(run.tracing, message, claimTrace);
  traces.set(message.id, span.context);
  const outbound = {
    id: message.id,
    to: message.recipient,
    content: message.content,
    traceparent: formatTraceparent(span.context),
  };
  const started = performance.now();
  // deliver() reports failures as results; a throw is a bug, treated as transient so nothing is lost.
  const result: DeliveryResult = await run.parts.client
    .deliver(outbound, run.deadline)
    .catch((error: unknown) => ({ outcome: 'transient', error: `delivery crashed: ${String(error)}` }));
  const seconds = (performance.now() - started) / 1000;
  const record = (outcome: AttemptOutcome, note?: string) =>
    attemptRecord(result, outcome, { startedAt, durationMs: seconds * 1000 }, note);
  const voided = run.policies.some((policy) => policy.voidsAttempt?.(result));
  endAttemptSpan(span, result, voided);
  if (voided) return { attempt: record('aborted') };
  run.parts.metrics.webhookDuration.observe({ status_class: statusClass(result.httpStatus) }, seconds);
  let handBack = false;
  for (const policy of run.policies) {
    const verdict = policy.afterAttempt?.(result, message);
    if ((verdict instanceof Promise ? await verdict : verdict) === 'hand-back') handBack = true;
  }
  if (handBack) return { attempt: record('retry', 'handed back, not counted') };
  const { maxAttempts, backoff } = run.settings;
  const decision = decideOutcome(result, message.attempts, maxAttempts, backoff);
  return { decision, attempt: record(outcomeOf(decision)) };
}

function statusClass(status: number | undefined): string {
  if (status === undefined) return 'error';
  return status === 0 ? 'dry-run' : `${Math.floor(status / 100)}xx`;
}
