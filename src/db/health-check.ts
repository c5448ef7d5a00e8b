import type { HealthCheck } from '../observability/health.ts';
import type { Pool } from './pool.ts';
import { ping } from './sqlc/health_sql.ts';

/** The database can be reached but cannot take writes (a standby, a read-only session). */
export class DatabaseReadOnlyError extends Error {
  override name = 'DatabaseReadOnlyError';
}

/**
 * The `database` readiness check (critical): one round trip on a pooled
 * connection that also asks whether the session can write. A server in
 * recovery or a read-only session (the endpoint still pointing at a standby
 * or a demoted primary after a failover) reads `down`, like an unreachable
 * one, so a load balancer stops sending traffic that would only get 503s.
 * That connection is destroyed rather than returned to the pool: behind a
 * proxy it stays on the read-only server for as long as it lives.
 * @throws DatabaseReadOnlyError (read `down`) or the connection's error
 */
export function databaseHealthCheck(pool: Pool): HealthCheck {
  return {
    name: 'database',
    critical: true,
    async check() {
      const client = await pool.connect();
      let failure: Error | undefined;
      try {
        const state = await ping(client);
        if (state?.inRecovery) failure = new DatabaseReadOnlyError('the database server is in recovery (a standby)');
        else if (state?.readOnly) failure = new DatabaseReadOnlyError('the database session is read-only');
      } catch (error) {
        failure = error instanceof Error ? error : new Error(String(error));
      } finally {
        client.release(failure);
      }
      if (failure) throw failure;
      return 'ok';
    },
  };
}
