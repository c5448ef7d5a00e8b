import { Router } from 'express';
import { ValidationError } from '../../errors.ts';
import type { MessageService, MessageStatus } from '../../messages/message-service.ts';

export function messageRoutes(messages: MessageService): Router {
  const router = Router();
  router.post('/messages', async (req, res) => {
    res.status(201).json(await messages.create(req.body));
  });
  router.post('/messages/batch', async (req, res) => {
    res.status(201).json({ items: await messages.createBatch(req.body.messages) });
  });
  router.get('/messages/sent', async (req, res) => {
    res.json(await messages.listSent(limitOf(req.query.limit), cursorOf(req.query.cursor)));
  });
  router.get('/messages', async (req, res) => {
    const status = (req.query.status as MessageStatus | undefined) ?? 'pending';
    res.json(await messages.listByStatus(status, limitOf(req.query.limit), cursorOf(req.query.cursor)));
  });
  router.get('/messages/:id', async (req, res) => {
    res.json(await messages.get(req.params.id));
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
