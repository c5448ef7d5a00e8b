/**
 * Concurrency: a run sends through `concurrency` lanes (WEBHOOK_CONCURRENCY),
 * each taking the next message of the chunk, in claim order, as soon as it is
 * free; and it claims no more than the lanes can send within half the lease.
 * It comes first in the policy list, so the other policies judge a message at
 * the moment a lane takes it, not while it waits for one.
 */
import type { DeliveryPolicyFactory } from '../policy.ts';
import type { RunSettings } from '../run-settings.ts';

/**
 * Messages claimed at once: each of the `concurrency` lanes sends at most as
 * many one after another as fit, at the webhook timeout each, in half the
 * lease (the configuration guarantees at least one), and at most 4.
 */
export function deliveryChunkSize(
  settings: Pick<RunSettings, 'concurrency' | 'messageLeaseSeconds' | 'timeoutMs'>,
): number {
  const perLane = Math.floor((settings.messageLeaseSeconds * 1000) / (2 * settings.timeoutMs));
  return settings.concurrency * Math.min(4, Math.max(1, perLane));
}

export const lanes: DeliveryPolicyFactory = ({ settings }) => {
  let free = settings.concurrency;
  /** Messages waiting for a lane, first come first served (claim order). */
  const waiting: Array<() => void> = [];
  return {
    beforeClaim: (wanted) => Math.min(wanted, deliveryChunkSize(settings)),
    beforeSend() {
      if (free > 0) {
        free -= 1;
        return true;
      }
      return new Promise<boolean>((resolve) => waiting.push(() => resolve(true)));
    },
    afterSend() {
      const next = waiting.shift();
      if (next) next();
      else free += 1;
    },
  };
};
