/**
 * The lease guard: a message is sent only while its lease leaves room for the
 * whole request and the outcome write after it. A claimed message may wait
 * for a free slot longer than its chunk's size assumed: every run of a pod
 * shares one concurrency gate (policies/lanes.ts), and the adaptive limit can
 * shrink after a claim. Once its lease has run out, another pod returns it to
 * pending and sends it, and a request started here then would send it twice.
 * So a message whose lease has less than the webhook timeout plus a margin
 * left goes back to pending untried (its attempt not counted), for whichever
 * claim comes next.
 *
 * The lease is measured on this pod's monotonic clock from just before the
 * claim: the database set `lease_until` from its own clock at the start of the
 * claim's transaction, which is no earlier, so the guard errs on the safe side.
 * It is the last policy in the list: it judges a message after every other
 * policy let it go, the wait for a slot included.
 */
import type { DeliveryPolicyFactory } from '../policy.ts';

/**
 * Lease that must be left when a request starts, beyond the webhook timeout
 * (ms): room for the outcome write after the last answer of the chunk. Half
 * the timeout at most, so a lease of twice the timeout (the smallest the
 * configuration allows) still leaves half a timeout to start in.
 */
export function leaseMarginMs(timeoutMs: number): number {
  return Math.min(1_000, timeoutMs / 2);
}

/**
 * The guard for one pipeline of a run. `now` is a monotonic clock in ms
 * (default performance.now), injectable for tests.
 */
export function leaseGuard(now: () => number = () => performance.now()): DeliveryPolicyFactory {
  return ({ settings }) => {
    /** When the current chunk's claim began; its messages' leases end no earlier than this plus the lease. */
    let claimedAt = Number.NEGATIVE_INFINITY;
    const leaseMs = settings.messageLeaseSeconds * 1_000;
    const needMs = settings.timeoutMs + leaseMarginMs(settings.timeoutMs);
    return {
      beforeClaim(wanted) {
        claimedAt = now();
        return wanted;
      },
      beforeSend: () => claimedAt + leaseMs - now() >= needMs,
    };
  };
}
