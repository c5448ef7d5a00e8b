import { Router } from 'express';
import { withTimeout } from '../../lib/with-timeout.ts';
import type { HealthCheck } from '../../observability/health.ts';

const checkTimeoutMs = 2_000;

export function healthRoutes(checks: HealthCheck[]): Router {
  const router = Router();
  router.get('/health-alive', (_req, res) => {
    res.json({ status: 'alive' });
  });
  router.get('/health-check', async (_req, res) => {
    const results = await Promise.all(
      checks.map(async ({ name, critical, check }) => {
        try {
          return { name, critical, state: await withTimeout(check(), checkTimeoutMs), ok: true };
        } catch {
          return { name, critical, state: 'down', ok: false };
        }
      }),
    );
    const degraded = results.some((result) => result.critical && !result.ok);
    res.status(degraded ? 503 : 200).json({
      status: degraded ? 'degraded' : 'ok',
      checks: Object.fromEntries(results.map((result) => [result.name, result.state])),
    });
  });
  return router;
}
