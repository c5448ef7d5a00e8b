import { setTimeout as sleep } from 'node:timers/promises';

export interface RetryOptions {
  /** Stop retrying when this aborts (the last error is rethrown). */
  signal?: AbortSignal;
  /** Stop retrying this many ms after the first attempt (the last error is rethrown). Default: never. */
  giveUpAfterMs?: number;
  /** First pause between attempts (ms), doubling up to `maxDelayMs`. Default 250. */
  firstDelayMs?: number;
  /** Longest pause between attempts (ms). Default 2000. */
  maxDelayMs?: number;
  /** Told about every failed attempt that will be retried (attempt counts from 1) and the pause before the next (ms). */
  onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
  /** Whether an error is worth another attempt; one that is not is rethrown at once. Default: every error. */
  retryIf?: (error: unknown) => boolean;
}

/**
 * Calls `attempt` until it resolves: for writes that must land (a delivery's
 * outcome, a run's end) while the database is briefly unreachable. Pauses
 * `firstDelayMs` doubling to `maxDelayMs` between attempts. Rethrows the last
 * error once `signal` aborts or `giveUpAfterMs` has passed, and at once an
 * error `retryIf` refuses.
 */
export async function retryUntilDone<T>(attempt: () => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const { signal, giveUpAfterMs = Number.POSITIVE_INFINITY, firstDelayMs = 250, maxDelayMs = 2_000 } = options;
  const started = Date.now();
  for (let tries = 1; ; tries += 1) {
    try {
      return await attempt();
    } catch (error) {
      const delay = Math.min(maxDelayMs, firstDelayMs * 2 ** (tries - 1));
      if (signal?.aborted || Date.now() + delay - started > giveUpAfterMs) throw error;
      if (options.retryIf && !options.retryIf(error)) throw error;
      options.onRetry?.(error, tries, delay);
      try {
        await sleep(delay, undefined, { signal });
      } catch {
        throw error;
      }
    }
  }
}
