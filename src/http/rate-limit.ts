import type { RequestHandler } from 'express';
import { ipKeyGenerator, rateLimit } from 'express-rate-limit';
import { authenticatedKeyId } from './auth.ts';
import { errorBody } from './errors.ts';

/**
 * Message intake limit per client and pod, in a one-minute window; 0 turns
 * it off. A client is its API key when the request was authenticated with one
 * (whichever header carried it: auth.ts), else its address: `req.ip`, which
 * honours X-Forwarded-For only from the proxies TRUST_PROXY names (IPv6
 * addresses count per /56, so one host cannot dodge the limit by rotating
 * addresses). Answers 429 `rate_limited` with Retry-After (seconds) and the
 * draft-7 `RateLimit` headers.
 * The count is kept in each pod's memory: with N pods behind a balancer a
 * client gets up to N times the limit, which is what this guards against:
 * one client flooding the queue, not an exact quota.
 */
export function intakeRateLimit(perMinute: () => number): RequestHandler {
  return rateLimit({
    windowMs: 60_000,
    limit: () => perMinute(),
    skip: () => perMinute() === 0,
    standardHeaders: 'draft-7',
    legacyHeaders: false,
    // A client's X-Forwarded-For with TRUST_PROXY unset is expected, not a misconfiguration to log.
    validate: { xForwardedForHeader: false, trustProxy: false },
    keyGenerator: (req) => {
      const keyId = authenticatedKeyId(req);
      return keyId ? `key:${keyId}` : `ip:${ipKeyGenerator(req.ip ?? req.socket.remoteAddress ?? '')}`;
    },
    handler: (_req, res) => {
      res
        .status(429)
        .json(errorBody('rate_limited', `more than ${perMinute()} message intake requests a minute from this client`));
    },
  });
}
