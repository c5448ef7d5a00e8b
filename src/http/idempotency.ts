import type { Request, RequestHandler } from 'express';
import {
  type IdempotencyStore,
  idempotencyScope,
  invalidIdempotencyKey,
  requestFingerprint,
  type StoredResponse,
} from '../messages/idempotency.ts';
import type { Queryable } from '../messages/message-service.ts';
import { authenticatedKeyId } from './auth.ts';

/** Header names of idempotent message intake (openapi.yaml's `Idempotency-Key` parameter and replay header). */
export const IDEMPOTENCY_KEY_HEADER = 'Idempotency-Key';
export const REPLAYED_HEADER = 'Idempotent-Replayed';

/**
 * Wraps an intake route: without an `Idempotency-Key` header `work` simply
 * runs; with one, it runs at most once per key and API key within 24 h, and a
 * repeat gets the first answer again with `Idempotent-Replayed: true`.
 * `work` writes through the `db` it is given (a transaction when a key is set).
 * A key that is empty or longer than 255 characters, or sent in two header
 * lines, is a 400 `invalid_idempotency_key`.
 */
export function idempotent(
  store: IdempotencyStore,
  apiKeys: () => string[],
  work: (req: Request, db: Queryable | undefined) => Promise<StoredResponse>,
): RequestHandler {
  return async (req, res) => {
    const key = req.get(IDEMPOTENCY_KEY_HEADER);
    if (key === undefined) {
      const response = await work(req, undefined);
      res.status(response.status).json(response.body);
      return;
    }
    if ((req.headersDistinct['idempotency-key']?.length ?? 0) > 1) throw invalidIdempotencyKey(true);
    if (key.length < 1 || key.length > 255) {
      throw invalidIdempotencyKey();
    }
    const outcome = await store.run(
      {
        scope: idempotencyScope(presentedApiKey(req, apiKeys())),
        key,
        requestHash: requestFingerprint(req.method, req.path, req.body),
      },
      (client) => work(req, client),
    );
    if (outcome.replayed) res.setHeader(REPLAYED_HEADER, 'true');
    res.status(outcome.response.status).json(outcome.response.body);
  };
}

/**
 * The API key the request authenticated with (auth.ts: a digest, whichever
 * header carried it, so a wrong key in the other header cannot pick the
 * scope); without configured keys every client shares one scope.
 */
function presentedApiKey(req: Request, keys: string[]): string | undefined {
  return keys.length === 0 ? undefined : authenticatedKeyId(req);
}
