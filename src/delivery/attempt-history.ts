/**
 * The delivery history: what is kept of each webhook attempt that was made
 * (message_attempts, written by settle.ts in the statement that records the
 * message's outcome, read by GET /messages/{id}/attempts).
 */
import type { DeliveryDecision } from './backoff.ts';
import type { DeliveryResult } from './webhook.ts';

/** `delivered`, `retry` (tried again later), `failed` (for good), `aborted` (cut off by the shutdown deadline). */
export type AttemptOutcome = 'delivered' | 'retry' | 'failed' | 'aborted';

/** One attempt as message_attempts keeps it; its number is given by the database. */
export interface AttemptRecord {
  startedAt: Date;
  /** Whole milliseconds from the request leaving to its result. */
  durationMs: number;
  outcome: AttemptOutcome;
  /** Null when no HTTP response came (timeout, network error, dry run). */
  httpStatus: number | null;
  /** Null when delivered; otherwise the short error (`timeout`, `connection refused`, `HTTP 503`). */
  error: string | null;
  /** The first 1,024 characters of the response body, secrets redacted (webhook.ts); null without a body. */
  responseExcerpt: string | null;
}

/** What became of a message after an attempt, as its history says it. */
export function outcomeOf(decision: DeliveryDecision): AttemptOutcome {
  if (decision.status === 'sent') return 'delivered';
  return decision.status === 'pending' ? 'retry' : 'failed';
}

/**
 * The record of one attempt that ended with `result` and came to `outcome`.
 * `note` is appended to the error (e.g. why the attempt does not count).
 */
export function attemptRecord(
  result: DeliveryResult,
  outcome: AttemptOutcome,
  timing: { startedAt: Date; durationMs: number },
  note?: string,
): AttemptRecord {
  const error = result.outcome === 'sent' ? null : (result.attemptError ?? result.error);
  return {
    startedAt: timing.startedAt,
    durationMs: Math.max(0, Math.round(timing.durationMs)),
    outcome,
    httpStatus: result.httpStatus ? result.httpStatus : null,
    error: error !== null && note ? `${error} (${note})` : error,
    responseExcerpt: result.responseExcerpt ?? null,
  };
}
