import type pg from 'pg';

/** What a transaction needs of a pool: the service's pool (`ServicePool`, pool.ts) is one. */
export interface TransactionPool {
  connect(): Promise<pg.PoolClient>;
  /** The statement that opens a transaction, its settings included (`beginStatement`). */
  readonly begin: string;
}

export interface TransactionOptions {
  /**
   * A statement without parameters (a sqlc query's text) run first in the
   * transaction, sent with its BEGIN in one round trip; its result is not read.
   */
  prelude?: string;
}

/**
 * Runs `work` in one transaction on one connection: commit on success,
 * rollback on error. The transaction opens with the pool's `begin`, which
 * sets the statement timeouts for it (`SET LOCAL`). A connection that failed
 * (a timed-out reply, a dropped link) is destroyed rather than returned to the
 * pool, where it would hang the next caller.
 */
export async function withTransaction<T>(
  pool: TransactionPool,
  work: (client: pg.PoolClient) => Promise<T>,
  options: TransactionOptions = {},
): Promise<T> {
  const client = await pool.connect();
  let failure: Error | undefined;
  try {
    await client.query(options.prelude ? `${pool.begin};\n${options.prelude}` : pool.begin);
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    failure = error instanceof Error ? error : new Error(String(error));
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.release(failure);
  }
}
