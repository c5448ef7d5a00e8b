import { randomUUID, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import express, { type Express, type RequestHandler } from 'express';
import * as OpenApiValidator from 'express-openapi-validator';
import { parse } from 'yaml';
import type { JobService } from '../jobs/job-service.ts';
import type { IdempotencyStore } from '../messages/idempotency.ts';
import type { MessageService } from '../messages/message-service.ts';
import type { HealthCheck } from '../observability/health.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { errorBody, errorHandler, notFound } from './errors.ts';
import { intakeRateLimit } from './rate-limit.ts';
import { healthRoutes } from './routes/health.ts';
import { jobRoutes } from './routes/jobs.ts';
import { messageRoutes } from './routes/messages.ts';
import { swaggerRoutes } from './swagger.ts';

export const openApiPath = new URL('../../openapi.yaml', import.meta.url).pathname;

export interface AppDependencies {
  jobs: JobService;
  messages: MessageService;
  /** Idempotency-Key records of message intake. */
  idempotency: IdempotencyStore;
  health: HealthCheck[];
  metrics: Metrics;
  logger: Logger;
  /** Current API keys; empty means the API is open. Read per request so a Vault change applies live. */
  apiKeys: () => string[];
  /** Message intake requests per client and minute; 0 is unlimited. */
  intakePerMinute: () => number;
}

/** Batch of 1000 messages of 160 characters, with room for JSON and multi-byte text. */
const bodyLimit = '2mb';

export function createApp(deps: AppDependencies): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', false);
  const spec = parse(readFileSync(openApiPath, 'utf8'));

  app.use(requestContext(deps.logger, deps.metrics));
  app.use(healthRoutes(deps.health));
  app.get('/metrics', async (_req, res) => {
    res.type(deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics());
  });
  app.use(swaggerRoutes(spec));

  app.use(express.json({ limit: bodyLimit, strict: true }));
  app.use(requireApiKey(deps.apiKeys));
  const limitIntake = intakeRateLimit(deps.intakePerMinute, deps.apiKeys);
  app.use((req, res, next) =>
    req.method === 'POST' && (req.path === '/messages' || req.path === '/messages/batch')
      ? limitIntake(req, res, next)
      : next(),
  );
  app.use(
    OpenApiValidator.middleware({
      apiSpec: openApiPath,
      validateRequests: { allowUnknownQueryParameters: false, coerceTypes: true },
      validateResponses: false,
      // Authentication is requireApiKey's job (keys are optional by configuration);
      // the spec's `security` is there for clients and Swagger UI's Authorize.
      validateSecurity: false,
      ignorePaths: /^\/(health-alive|health-check|metrics|swagger)/,
    }),
  );
  app.use(jobRoutes(deps.jobs));
  app.use(messageRoutes(deps.messages, deps.idempotency, deps.apiKeys));
  app.use(notFound);
  app.use(errorHandler(deps.logger));
  return app;
}

/** Request id (honoured or generated, echoed back), one log line and one latency sample per request. */
function requestContext(logger: Logger, metrics: Metrics): RequestHandler {
  return (req, res, next) => {
    const incoming = req.get('x-request-id');
    const requestId = incoming && /^[\w.:-]{1,128}$/.test(incoming) ? incoming : randomUUID();
    res.setHeader('X-Request-Id', requestId);
    const started = performance.now();
    res.on('finish', () => {
      const seconds = (performance.now() - started) / 1000;
      // The route template (/jobs/:name), never the raw path, keeps label cardinality bounded.
      const route: string = res.locals.routeLabel
        ? res.locals.routeLabel
        : req.route?.path
          ? `${req.baseUrl}${req.route.path}`
          : res.statusCode === 404
            ? 'unmatched'
            : req.path;
      metrics.httpDuration.observe({ method: req.method, route, status_code: String(res.statusCode) }, seconds);
      const level =
        res.statusCode >= 500 ? 'error' : req.path.startsWith('/health') || req.path === '/metrics' ? 'debug' : 'info';
      logger[level](
        { requestId, method: req.method, route, status: res.statusCode, durationMs: Math.round(seconds * 1000) },
        'request',
      );
    });
    next();
  };
}

/** With API_KEYS set, /jobs and /messages need `X-API-Key` (or `Authorization: Bearer`). */
function requireApiKey(apiKeys: () => string[]): RequestHandler {
  return (req, res, next) => {
    const keys = apiKeys();
    if (keys.length === 0) return next();
    const presented = req.get('x-api-key') ?? req.get('authorization')?.replace(/^Bearer\s+/i, '');
    if (presented && keys.some((key) => sameSecret(key, presented))) return next();
    res.status(401).json(errorBody('unauthorized', 'a valid X-API-Key header is required'));
  };
}

function sameSecret(expected: string, presented: string): boolean {
  const a = Buffer.from(expected);
  const b = Buffer.from(presented);
  return a.length === b.length && timingSafeEqual(a, b);
}
