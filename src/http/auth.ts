import { createHash, timingSafeEqual } from 'node:crypto';
import type { Request, RequestHandler } from 'express';
import { errorBody } from './errors.ts';

/**
 * API keys: with `API_KEYS` set, a request needs `Authorization: Bearer <key>`
 * or `X-API-Key: <key>` (openapi.yaml's `bearerAuth` and `apiKeyHeader`
 * schemes). Keys are compared in constant time over their SHA-256 digests, so
 * neither a key's content nor its length leaks through timing. Without keys
 * the API is open (and the service listens on loopback only, see config).
 */

const authenticatedKey = new WeakMap<Request, string>();

/** The keys a request presents, in the order they are tried: X-API-Key, then a Bearer token. */
export function presentedKeys(req: Request): string[] {
  const keys: string[] = [];
  const header = req.get('x-api-key');
  if (header) keys.push(header.trim());
  const bearer = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(req.get('authorization') ?? '')?.[1];
  if (bearer) keys.push(bearer);
  return keys;
}

/**
 * The API key this request was authenticated with, as a short digest (never
 * the key itself), or undefined when keys are not in use or none matched.
 * The intake rate limit counts per this value.
 */
export function authenticatedKeyId(req: Request): string | undefined {
  return authenticatedKey.get(req);
}

/**
 * Middleware: 401 `unauthorized` with `WWW-Authenticate: Bearer` unless a
 * presented key is one of `apiKeys()` (read per request: a Vault change
 * applies live). With no keys configured every request passes.
 */
export function requireApiKey(apiKeys: () => string[]): RequestHandler {
  return (req, res, next) => {
    const keys = apiKeys();
    if (keys.length === 0) return next();
    const presented = presentedKeys(req);
    const digests = keys.map(digest);
    for (const candidate of presented) {
      const candidateDigest = digest(candidate);
      // Compare with every key, without stopping early at a match.
      let matched = false;
      for (const keyDigest of digests) matched = timingSafeEqual(keyDigest, candidateDigest) || matched;
      if (matched) {
        authenticatedKey.set(req, candidateDigest.subarray(0, 12).toString('hex'));
        return next();
      }
    }
    const challenge =
      presented.length > 0 ? 'Bearer realm="job-manager", error="invalid_token"' : 'Bearer realm="job-manager"';
    res
      .status(401)
      .set('WWW-Authenticate', challenge)
      .json(
        errorBody(
          'unauthorized',
          presented.length > 0
            ? 'the API key is not valid'
            : 'an API key is required: send "Authorization: Bearer <key>" or "X-API-Key: <key>"',
        ),
      );
  };
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}
