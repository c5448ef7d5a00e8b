/**
 * The shutdown deadline: once it passes, no message is sent any more, and a
 * request it aborted in flight does not count as an attempt. Both kinds of
 * message are handed back to pending with the same id, their attempt count
 * unchanged, for the next pod to send.
 */
import type { DeliveryPolicyFactory } from '../policy.ts';

export const shutdown: DeliveryPolicyFactory = ({ deadline }) => ({
  beforeSend: () => !deadline.aborted,
  voidsAttempt: (result) => deadline.aborted && result.outcome === 'transient',
});
