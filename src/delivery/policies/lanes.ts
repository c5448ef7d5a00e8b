/**
 * Concurrency: the pod sends through a shared gate whose limit is the number
 * of webhook requests in flight at once, over all runs. With
 * WEBHOOK_ADAPTIVE_CONCURRENCY (the default) the limit adapts to the webhook
 * (adaptive-limit.ts) up to WEBHOOK_CONCURRENCY; without it the limit is
 * WEBHOOK_CONCURRENCY. Messages take a free slot in claim order, first come
 * first served; a run claims about what its slots can send within half the
 * lease. The policy comes first in the list, so the other policies judge a
 * message at the moment it gets a slot, not while it waits for one (and the
 * lease guard, last, whether its lease still has room for the request).
 */
import { AdaptiveLimit } from '../adaptive-limit.ts';
import type { ClaimedMessage } from '../claim.ts';
import type { DeliveryPolicyFactory } from '../policy.ts';
import type { RunSettings } from '../run-settings.ts';
import type { DeliveryResult } from '../webhook.ts';

/**
 * Messages claimed at once: each of the `concurrency` slots sends at most as
 * many one after another as fit, at the webhook timeout each, in half the
 * lease (the configuration guarantees at least one), and at most 4. The
 * slots are shared by every run of the pod, so a message can still wait for
 * one longer than that: the lease guard (policies/lease-guard.ts) hands back
 * what would no longer end within its lease.
 */
export function deliveryChunkSize(
  settings: Pick<RunSettings, 'concurrency' | 'messageLeaseSeconds' | 'timeoutMs'>,
): number {
  const perLane = Math.floor((settings.messageLeaseSeconds * 1000) / (2 * settings.timeoutMs));
  return settings.concurrency * Math.min(4, Math.max(1, perLane));
}

export interface ConcurrencyGateOptions {
  /** WEBHOOK_CONCURRENCY: the limit, or its ceiling when adaptive. */
  ceiling: number;
  /** WEBHOOK_ADAPTIVE_CONCURRENCY. */
  adaptive: boolean;
  /** Told the limit after every change (the gauge). */
  onLimit?: (limit: number) => void;
}

/** The pod's webhook requests in flight: one gate shared by every run. */
export class ConcurrencyGate {
  #inFlight = 0;
  readonly #waiting: Array<() => void> = [];
  #ceiling: number;
  #adaptive: AdaptiveLimit | undefined;
  readonly #onLimit: (limit: number) => void;

  constructor(options: ConcurrencyGateOptions) {
    this.#ceiling = options.ceiling;
    this.#onLimit = options.onLimit ?? (() => {});
    this.reconfigure(options.ceiling, options.adaptive);
  }

  /** Requests allowed in flight now (>= 1). */
  get limit(): number {
    return this.#adaptive?.limit ?? this.#ceiling;
  }

  /** A live change: a new ceiling applies at once; switching adaptive on starts learning afresh. */
  reconfigure(ceiling: number, adaptive: boolean): void {
    this.#ceiling = ceiling;
    if (!adaptive) this.#adaptive = undefined;
    else if (this.#adaptive) this.#adaptive.setCeiling(ceiling);
    else this.#adaptive = new AdaptiveLimit({ ceiling });
    this.#changed();
  }

  /** Takes a slot: at once when one is free, else once one frees (FIFO). */
  acquire(): true | Promise<true> {
    if (this.#inFlight < this.limit) {
      this.#inFlight += 1;
      return true;
    }
    this.#adaptive?.noteWaiting();
    return new Promise<true>((resolve) => this.#waiting.push(() => resolve(true)));
  }

  /** Gives a slot back. */
  release(): void {
    this.#inFlight -= 1;
    this.#drain();
  }

  /** A counted attempt that took `latencyMs`: the adaptive limit learns from it. */
  record(result: DeliveryResult, latencyMs: number): void {
    if (!this.#adaptive) return;
    const before = this.#adaptive.limit;
    this.#adaptive.record({ latencyMs, overload: isOverload(result) });
    if (this.#adaptive.limit !== before) this.#changed();
  }

  #changed(): void {
    this.#onLimit(this.limit);
    this.#drain();
  }

  #drain(): void {
    while (this.#waiting.length > 0 && this.#inFlight < this.limit) {
      this.#inFlight += 1;
      this.#waiting.shift()?.();
    }
  }
}

/** The webhook said it cannot take this many at once: a timeout, 429 or 503. */
function isOverload(result: DeliveryResult): boolean {
  if (result.outcome !== 'transient') return false;
  if (result.httpStatus === 429 || result.httpStatus === 503) return true;
  return result.httpStatus === undefined && result.error.startsWith('timeout');
}

/** The per-run policy over the pod's gate. */
export function lanes(gate: ConcurrencyGate): DeliveryPolicyFactory {
  return ({ settings, pipelines }) => {
    /** When each message of the run got its slot (performance.now ms). */
    const started = new Map<string, number>();
    return {
      // The run's pipelines share the chunk: together they hold no more than one pipeline would.
      beforeClaim: (wanted) =>
        Math.min(wanted, Math.ceil(deliveryChunkSize({ ...settings, concurrency: gate.limit }) / pipelines)),
      beforeSend(message: ClaimedMessage) {
        const slot = gate.acquire();
        const take = () => {
          started.set(message.id, performance.now());
          return true;
        };
        // A free slot answers at once (no promise, no microtask turn): the common case under load.
        return slot === true ? take() : slot.then(take);
      },
      afterAttempt(result, message) {
        const since = started.get(message.id);
        if (since !== undefined) gate.record(result, performance.now() - since);
        return undefined;
      },
      afterSend: () => gate.release(),
      endChunk: () => started.clear(),
    };
  };
}
