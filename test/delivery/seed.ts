import type { Pool } from '../../src/db/pool.ts';
import { insertMessages } from '../../src/db/sqlc/messages_sql.ts';

/** `count` pending messages due now, `m0`, `m1`, … in claim order; resolves with their ids in that order. */
export async function seedMessages(pool: Pool, count: number): Promise<string[]> {
  const rows = await insertMessages(pool, {
    recipients: Array.from({ length: count }, () => '+905551111111'),
    contents: Array.from({ length: count }, (_, index) => `m${index}`),
    sendAts: Array.from({ length: count }, () => ''),
    traceParent: null,
  });
  return rows.map((row) => row.id);
}
