import { Router } from 'express';
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

// The OpenAPI validator has already checked range and type (and coerced).
function limitOf(value: unknown): number {
  return value === undefined ? 20 : Number(value);
}

function cursorOf(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}
