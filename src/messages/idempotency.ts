/**
 * Idempotent intake (the `Idempotency-Key` header, with Stripe's semantics).
 *
 * A request with an `Idempotency-Key` runs in one transaction that first takes
 * a transaction-scoped advisory lock on (scope, key), without waiting:
 *
 * - lock not available: another request with this key is being processed
 *   right now, on this pod or another -> 409 `idempotency_key_in_use`;
 * - a record younger than 24 h with another request hash -> 409
 *   `idempotency_key_reused`;
 * - a record with the same hash -> its stored status and body again
 *   (`replayed: true`), nothing stored;
 * - no record: the work runs on the same transaction and its answer is saved
 *   with it, so the messages and the record commit together or not at all. A
 *   request that fails (a 400, a crash) leaves no record and the key free.
 *
 * Keys are scoped by the API key that sent them (its SHA-256, never the key
 * itself); without API keys every client shares one scope. Records older than
 * 24 h count as absent and are purged in bounded batches by the maintenance
 * loop (src/maintenance/).
 */
import { createHash } from 'node:crypto';
import type { Pool, PoolClient } from '../db/pool.ts';
import {
  getIdempotencyKey,
  lockIdempotencyKey,
  purgeExpiredIdempotencyKeys as purgeExpiredBatch,
  saveIdempotencyKey,
} from '../db/sqlc/idempotency_keys_sql.ts';
import { withTransaction } from '../db/transaction.ts';
import { ConflictError, ValidationError } from '../errors.ts';

/** One intake request as the idempotency record sees it. */
export interface IdempotentRequest {
  /** From `idempotencyScope`. */
  scope: string;
  /** The Idempotency-Key header, 1..255 characters. */
  key: string;
  /** From `requestFingerprint`. */
  requestHash: string;
}

/** What was (or will be) answered: HTTP status and JSON body. */
export interface StoredResponse {
  status: number;
  body: unknown;
}

export interface IdempotentOutcome {
  response: StoredResponse;
  /** true: the stored answer of an earlier request; nothing was done now. */
  replayed: boolean;
}

/** Keys per purge statement, so the purge never locks many rows at once. */
export const PURGE_BATCH_ROWS = 1000;

/**
 * The 400 for an `Idempotency-Key` that is empty or longer than 255 characters
 * (openapi.yaml: `IdempotencyKey`), or, with `repeated`, sent in more than one
 * header line (Node would join them into a key the client never chose, `a, b`).
 */
export function invalidIdempotencyKey(repeated = false): ValidationError {
  return new ValidationError(
    'invalid_idempotency_key',
    repeated ? 'Idempotency-Key must be sent once' : 'Idempotency-Key must be 1 to 255 characters',
  );
}

/** The scope of a key: SHA-256 (hex) of the API key that sent it, or '' when the API is open. */
export function idempotencyScope(apiKey: string | undefined): string {
  return apiKey ? createHash('sha256').update(apiKey).digest('hex') : '';
}

/**
 * SHA-256 (hex) of the method, the path and the body as canonical JSON (object
 * keys sorted), so a resend with other whitespace or key order is "the same
 * body" and any change of a value is not.
 */
export function requestFingerprint(method: string, path: string, body: unknown): string {
  return createHash('sha256')
    .update(`${method.toUpperCase()} ${path}\n${canonicalJson(body)}`)
    .digest('hex');
}

/** The intake's idempotency records on one database; what the HTTP layer is handed. */
export class IdempotencyStore {
  readonly #pool: Pool;
  constructor(pool: Pool) {
    this.#pool = pool;
  }

  /** See `runIdempotent`. */
  run(request: IdempotentRequest, work: (client: PoolClient) => Promise<StoredResponse>): Promise<IdempotentOutcome> {
    return runIdempotent(this.#pool, request, work);
  }
}

/**
 * Runs `work` at most once per (scope, key) within 24 h; see the module comment.
 * `work` must do all its writes on the client it is given.
 * @throws ConflictError 409 `idempotency_key_in_use` or `idempotency_key_reused`; whatever `work` throws
 */
export async function runIdempotent(
  pool: Pool,
  request: IdempotentRequest,
  work: (client: PoolClient) => Promise<StoredResponse>,
): Promise<IdempotentOutcome> {
  const key = { scope: request.scope, idempotencyKey: request.key };
  return withTransaction(pool, async (client) => {
    const lock = await lockIdempotencyKey(client, key);
    if (!lock?.locked) throw inUse(request.key);
    const earlier = await getIdempotencyKey(client, key);
    if (earlier) {
      if (earlier.requestHash !== request.requestHash) {
        throw new ConflictError(
          'idempotency_key_reused',
          `Idempotency-Key "${request.key}" was already used with a different request in the last 24 hours`,
        );
      }
      return { response: { status: earlier.responseStatus, body: earlier.responseBody }, replayed: true };
    }
    const response = await work(client);
    const saved = await saveIdempotencyKey(client, {
      ...key,
      requestHash: request.requestHash,
      responseStatus: response.status,
      responseBody: JSON.stringify(response.body),
    });
    // Only when a lock collided with a different key's hash and both raced: roll back, the client retries.
    if (!saved) throw inUse(request.key);
    return { response, replayed: false };
  });
}

/**
 * One bounded batch of the purge (run by the maintenance loop, src/maintenance/):
 * deletes at most PURGE_BATCH_ROWS records older than 24 h.
 * @returns how many were deleted (fewer than PURGE_BATCH_ROWS: none is left)
 */
export async function purgeExpiredIdempotencyKeyBatch(pool: Pool): Promise<number> {
  return (await purgeExpiredBatch(pool, { maxRows: PURGE_BATCH_ROWS }))?.deleted ?? 0;
}

function inUse(key: string): ConflictError {
  return new ConflictError(
    'idempotency_key_in_use',
    `a request with Idempotency-Key "${key}" is still being processed; retry once it has finished`,
  );
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, item]) => item !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([name, item]) => `${JSON.stringify(name)}:${canonicalJson(item)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}
