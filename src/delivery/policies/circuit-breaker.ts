/**
 * The webhook circuit breaker, and the delivery policy that applies it. One
 * breaker per pod, shared by every run on it.
 *
 * - closed: deliveries go out as usual. `threshold` consecutive transient
 *   failures (network error, timeout, 408, 429, 5xx) open it.
 * - open: nobody claims messages. After a pause (1 s, doubling on every
 *   failed probe up to 60 s) one caller gets the probe: it claims a single
 *   message and delivers it (half-open). Any answer that is not a transient
 *   failure closes the breaker; a transient one opens it again.
 *
 * Messages that were claimed but not tried because the breaker opened, and
 * the probe's message when the probe fails, go back to pending with their
 * attempt count unchanged, so an outage of the webhook fails no message.
 */
import type { Logger } from '../../observability/logger.ts';
import type { Metrics } from '../../observability/metrics.ts';
import type { DeliveryPolicyFactory } from '../policy.ts';

export type BreakerState = 'closed' | 'open' | 'half-open';

/** What the caller may do now: deliver as usual, or deliver exactly one message as the probe. */
export type BreakerTurn = 'normal' | 'probe';

/** How a delivery went, as far as the breaker cares. */
export type BreakerVerdict = 'answered' | 'transient';

export interface CircuitBreakerOptions {
  /** Consecutive transient failures that open the breaker (WEBHOOK_BREAKER_THRESHOLD). */
  threshold: number;
  /** Pause before the first probe (ms). Default 1000. */
  firstProbeDelayMs?: number;
  /** Longest pause between probes (ms). Default 60000. */
  maxProbeDelayMs?: number;
  /** Told about every change of state. */
  onChange?: (state: BreakerState, previous: BreakerState) => void;
}

export class CircuitBreaker {
  #threshold: number;
  readonly #firstDelayMs: number;
  readonly #maxDelayMs: number;
  readonly #onChange: (state: BreakerState, previous: BreakerState) => void;
  #state: BreakerState = 'closed';
  #failures = 0;
  #delayMs: number;
  #probeAt = 0;
  /** When the current probe was handed out; a probe out for longer than the longest pause is presumed lost. */
  #probeSince = 0;
  #waiters = new Set<() => void>();

  constructor(options: CircuitBreakerOptions) {
    this.#threshold = options.threshold;
    this.#firstDelayMs = options.firstProbeDelayMs ?? 1_000;
    this.#maxDelayMs = options.maxProbeDelayMs ?? 60_000;
    this.#delayMs = this.#firstDelayMs;
    this.#onChange = options.onChange ?? (() => {});
  }

  get state(): BreakerState {
    return this.#state;
  }

  /** A new WEBHOOK_BREAKER_THRESHOLD (live configuration). */
  setThreshold(threshold: number): void {
    this.#threshold = threshold;
  }

  /** False while the breaker is open or half-open: a message claimed earlier must not be tried now. */
  allowsDelivery(): boolean {
    return this.#state === 'closed';
  }

  /**
   * Waits until the caller may claim: resolves 'normal' while closed, or
   * 'probe' for the one caller whose turn it is to probe. Rejects with the
   * signal's reason when `signal` aborts first.
   */
  async turn(signal: AbortSignal): Promise<BreakerTurn> {
    for (;;) {
      signal.throwIfAborted();
      if (this.#state === 'closed') return 'normal';
      const now = Date.now();
      const waitMs = this.#state === 'open' ? this.#probeAt - now : this.#probeSince + this.#maxDelayMs - now; // a lost probe
      if (waitMs <= 0) {
        this.#probeSince = now;
        this.#set('half-open');
        return 'probe';
      }
      await this.#changeOr(waitMs, signal);
    }
  }

  /** Reports a delivery's result; `probe` says whether it was the probe. */
  record(verdict: BreakerVerdict, probe: boolean): void {
    if (verdict === 'answered') {
      // Any answer that is not a transient failure shows the webhook is back.
      this.#failures = 0;
      if (this.#state !== 'closed') {
        this.#delayMs = this.#firstDelayMs;
        this.#set('closed');
      }
      return;
    }
    if (probe) {
      this.#delayMs = Math.min(this.#maxDelayMs, this.#delayMs * 2);
      this.#openFor(this.#delayMs);
      return;
    }
    if (this.#state !== 'closed') return; // a request that left before the breaker opened
    this.#failures += 1;
    if (this.#failures >= this.#threshold) {
      this.#delayMs = this.#firstDelayMs;
      this.#openFor(this.#delayMs);
    }
  }

  /** The probe ended without a verdict (nothing to claim, or shutdown): the next caller may probe at once. */
  releaseProbe(): void {
    if (this.#state !== 'half-open') return;
    this.#probeAt = Date.now();
    this.#set('open');
  }

  #openFor(delayMs: number): void {
    this.#probeAt = Date.now() + delayMs;
    this.#failures = 0;
    this.#set('open');
  }

  #set(state: BreakerState): void {
    const previous = this.#state;
    this.#state = state;
    if (previous !== state) this.#onChange(state, previous);
    for (const wake of [...this.#waiters]) wake();
  }

  /** Resolves on the next state change or after `ms`; rejects when `signal` aborts. */
  #changeOr(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(done);
        signal.removeEventListener('abort', aborted);
        resolve();
      };
      const aborted = () => {
        done();
        reject(signal.reason);
      };
      const timer = Number.isFinite(ms) ? setTimeout(done, Math.max(0, ms)) : undefined;
      this.#waiters.add(done);
      signal.addEventListener('abort', aborted, { once: true });
    });
  }
}

/**
 * The breaker's own observation, as its `onChange`: the state gauge
 * (`job_manager_webhook_breaker_state{state}`), the opened counter (every move
 * to open, a failed probe included) and one log line when it opens from
 * closed and when it closes.
 */
export function observeBreaker(
  metrics: Metrics,
  logger: Logger,
): (state: BreakerState, previous: BreakerState) => void {
  return (state, previous) => {
    for (const known of ['closed', 'open', 'half-open'] as const)
      metrics.webhookBreaker.set({ state: known }, known === state ? 1 : 0);
    if (state === 'open') metrics.webhookBreakerOpened.inc();
    if (state === 'open' && previous === 'closed') {
      logger.warn(
        'webhook circuit breaker open: consecutive transient failures; claiming stops, probing one message at a time',
      );
    } else if (state === 'closed') {
      logger.info('webhook circuit breaker closed: the webhook answers again');
    }
  };
}

/**
 * The breaker as a delivery policy: before each claim the run waits for its
 * turn (while the breaker is open nobody claims; an aborted run ends); the
 * probe's turn claims a single message. A message claimed earlier is not sent
 * once the breaker has opened. Every attempt's result is recorded; a failed
 * probe hands its message back, since it only confirms the outage the breaker
 * already knows of (not the message's fault). A probe that ends without a
 * verdict (nothing to claim, shutdown) is released at the end of the chunk.
 */
export function circuitBreaker(breaker: CircuitBreaker): DeliveryPolicyFactory {
  return ({ signal }) => {
    let probe = false;
    /** The probe ended with a verdict, or there is none this chunk. */
    let settled = true;
    return {
      async beforeClaim(wanted) {
        let turn: BreakerTurn;
        try {
          turn = await breaker.turn(signal);
        } catch {
          return 0;
        }
        probe = turn === 'probe';
        settled = !probe;
        return probe ? 1 : wanted;
      },
      beforeSend: () => probe || breaker.allowsDelivery(),
      afterAttempt(result) {
        breaker.record(result.outcome === 'transient' ? 'transient' : 'answered', probe);
        if (!probe) return undefined;
        settled = true;
        return result.outcome === 'transient' ? 'hand-back' : undefined;
      },
      endChunk() {
        if (!settled) breaker.releaseProbe();
        probe = false;
        settled = true;
      },
    };
  };
}
