/**
 * The claim of due messages: promote, then claim, in one transaction.
 *
 * A pending message is either available (its send time has come) or not yet
 * (a sendAt ahead, a retry in backoff); see the `available` column in
 * db/migrations/20261130005000_message_available.sql. PromoteDueMessages makes
 * up to `promotionBatch` due messages available, earliest due first;
 * ClaimMessages then takes the oldest available ones (created_at, id) in one
 * walk of messages_available_claim_idx. Both skip rows other pods hold, so
 * pods claiming at once never wait for each other. In one transaction, what
 * was promoted is claimable by this very claim; the promotion's row locks last
 * only until it commits. Both walk their index in order even before the table
 * was ever analysed (PlanClaimInIndexOrder).
 *
 * Claim order is exact whenever the messages that became due since the last
 * claim fit in `promotionBatch`; a larger burst (a whole campaign whose sendAt
 * just came) catches up by `promotionBatch` per claim, during which a newer
 * message already available can go out before an older one not yet promoted.
 */
import type { Pool } from '../db/pool.ts';
import {
  type ClaimMessagesArgs,
  type ClaimMessagesRow,
  claimMessages,
  planClaimInIndexOrderQuery,
  promoteDueMessages,
} from '../db/sqlc/messages_sql.ts';
import { withTransaction } from '../db/transaction.ts';

/**
 * Due messages made available per claim at most: well above any claim's size
 * (a chunk is at most 4 × the delivery concurrency), small enough that a claim
 * during a burst stays a short transaction.
 */
export const promotionBatch = 2_000;

/** A message claimed for delivery: leased to the claiming run until it is settled or the lease expires. */
export type ClaimedMessage = ClaimMessagesRow;

/** Promotes due messages, then claims up to `args.maxMessages` of the oldest available ones. */
export function claimDueMessages(pool: Pool, args: ClaimMessagesArgs): Promise<ClaimedMessage[]> {
  // Index order whatever the statistics say (a bulk intake before any ANALYZE): see the query's comment. It goes
  // with the transaction's BEGIN, in one round trip.
  return withTransaction(
    pool,
    async (client) => {
      await promoteDueMessages(client, { maxRows: promotionBatch });
      return claimMessages(client, args);
    },
    { prelude: planClaimInIndexOrderQuery },
  );
}
