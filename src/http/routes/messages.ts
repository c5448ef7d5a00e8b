import { Router } from 'express';
import { ValidationError } from '../../errors.ts';
import type { IdempotencyStore } from '../../messages/idempotency.ts';
import type { MessageService, MessageStatus } from '../../messages/message-service.ts';
import { idempotent } from '../idempotency.ts';

export function messageRoutes(
  messages: MessageService,
  idempotency: IdempotencyStore,
  apiKeys: () => string[],
): Router {
  const router = Router();
  router.post(
    '/messages',
    idempotent(idempotency, apiKeys, async (req, db) => ({ status: 201, body: await messages.create(req.body, db) })),
  );
  router.post(
    '/messages/batch',
    idempotent(idempotency, apiKeys, async (req, db) => ({
      status: 201,
      body: { items: await messages.createBatch(req.body.messages, db) },
    })),
  );
  router.post('/messages/retry-failed', async (req, res) => {
    const range = (req.body ?? {}) as { since?: string; until?: string };
    res.json({ retried: await messages.retryFailed({ since: range.since, until: range.until }) });
  });
  router.get('/messages/sent', async (req, res) => {
    res.json(await messages.listSent(limitOf(req.query.limit), cursorOf(req.query.cursor)));
  });
  router.get('/messages', async (req, res) => {
    const status = req.query.status as MessageStatus | undefined;
    // An unencoded "+" in a query string arrives as a space (`?to=+90555…`); read it as the "+" it was.
    const to = typeof req.query.to === 'string' ? req.query.to.replace(/^ (?=\d)/, '+') : undefined;
    res.json(await messages.list({ status, to }, limitOf(req.query.limit), cursorOf(req.query.cursor)));
  });
  router.get('/messages/:id', async (req, res) => {
    res.json(await messages.get(req.params.id));
  });
  router.post('/messages/:id/cancel', async (req, res) => {
    res.json(await messages.cancel(req.params.id));
  });
  router.post('/messages/:id/retry', async (req, res) => {
    res.json(await messages.retry(req.params.id));
  });
  return router;
}

/** Page size; the validator has checked it, and this refuses anything that is still not 1..100. */
function limitOf(value: unknown): number {
  if (value === undefined) return 20;
  const limit = Number(value);
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > 100) {
    throw new ValidationError('validation_failed', 'limit: must be a whole number from 1 to 100');
  }
  return limit;
}

function cursorOf(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}
