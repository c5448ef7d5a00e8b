import type { RequestHandler } from 'express';
import { ipKeyGenerator, rateLimit } from 'express-rate-limit';
import { errorBody } from './errors.ts';

/**
 * Message intake limit per client (its API key when API_KEYS is set, else its IP address) and pod,
 * in a one-minute window. 0 turns it off. Answers 429 with Retry-After.
 * The count is kept in each pod's memory: with N pods behind a balancer a
 * client gets up to N times the limit, which is what this guards against:
 * one client flooding the queue, not an exact quota.
 */
export function intakeRateLimit(perMinute: () => number, apiKeys: () => string[]): RequestHandler {
  return rateLimit({
    windowMs: 60_000,
    limit: () => perMinute(),
    skip: () => perMinute() === 0,
    standardHeaders: 'draft-7',
    legacyHeaders: false,
    keyGenerator: (req) => {
      // A key counts only when keys are checked; otherwise a client could mint new ones to dodge the limit.
      const apiKey = apiKeys().length > 0 ? req.get('x-api-key') : undefined;
      return apiKey ? `key:${apiKey}` : `ip:${ipKeyGenerator(req.ip ?? '')}`;
    },
    handler: (_req, res) => {
      res
        .status(429)
        .json(errorBody('rate_limited', `more than ${perMinute()} messages requests a minute from this client`));
    },
  });
}
