/**
 * What happens to a message after a delivery attempt: sent, back to pending
 * after a delay, or failed for good.
 */
import type { DeliveryResult } from './webhook.ts';

export interface BackoffOptions {
  /** Ceiling of the first retry's delay; doubles with each attempt. Default 1 s. */
  baseMs?: number;
  /** No delay ceiling goes above this. Default 5 minutes. */
  maxMs?: number;
  /** Source of randomness in [0, 1); injectable for tests. */
  random?: () => number;
}

/** A server's Retry-After is honoured up to this long, so a silly value cannot park a message for days. */
export const MAX_RETRY_AFTER_MS = 60 * 60 * 1000;

export type DeliveryDecision =
  | { status: 'sent'; externalMessageId: string }
  | { status: 'pending'; retryDelayMs: number; error: string }
  | { status: 'failed'; error: string; reason: 'permanent' | 'attempts_exhausted' };

/**
 * Exponential backoff with full jitter: a uniformly random delay in
 * [0, min(maxMs, baseMs * 2^(attempt - 1))), where `attempt` counts from 1.
 */
export function backoffDelayMs(attempt: number, options: BackoffOptions = {}): number {
  const { baseMs = 1000, maxMs = 300_000, random = Math.random } = options;
  const exponent = Number.isFinite(attempt) ? Math.max(0, Math.floor(attempt) - 1) : 0;
  const ceiling = Math.min(maxMs, baseMs * 2 ** exponent);
  return Math.floor(random() * ceiling);
}

/**
 * @param attempts delivery attempts made so far, including the one that produced `result`
 * @param maxAttempts a transient failure on this attempt or later is final
 */
export function decideOutcome(
  result: DeliveryResult,
  attempts: number,
  maxAttempts: number,
  backoff: BackoffOptions = {},
): DeliveryDecision {
  switch (result.outcome) {
    case 'sent':
      return { status: 'sent', externalMessageId: result.externalMessageId };
    case 'permanent':
      return { status: 'failed', error: result.error, reason: 'permanent' };
    case 'transient': {
      if (attempts >= maxAttempts) {
        const tries = attempts === 1 ? '1 attempt' : `${attempts} attempts`;
        return { status: 'failed', error: `${result.error} (gave up after ${tries})`, reason: 'attempts_exhausted' };
      }
      const serverAsked = Math.min(result.retryAfterMs ?? 0, MAX_RETRY_AFTER_MS);
      return {
        status: 'pending',
        retryDelayMs: Math.max(serverAsked, backoffDelayMs(attempts, backoff)),
        error: result.error,
      };
    }
  }
}
