import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import express, { type Express, type RequestHandler } from 'express';
import * as OpenApiValidator from 'express-openapi-validator';
import { parse } from 'yaml';
import type { TrustProxy } from '../config/network.ts';
import { AppError, ValidationError } from '../errors.ts';
import type { JobService } from '../jobs/job-service.ts';
import type { IdempotencyStore } from '../messages/idempotency.ts';
import type { MessageService } from '../messages/message-service.ts';
import type { HealthCheck } from '../observability/health.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { requireApiKey } from './auth.ts';
import { errorHandler, hasBody, notFound } from './errors.ts';
import { jsonBody, rejectInvalidUrlText } from './input-decoding.ts';
import { strictQueryText } from './query-params.ts';
import { intakeRateLimit } from './rate-limit.ts';
import { healthRoutes } from './routes/health.ts';
import { jobRoutes } from './routes/jobs.ts';
import { messageRoutes } from './routes/messages.ts';
import { securityHeaders } from './security-headers.ts';
import { compileSpecRoutes, type SpecRoute, type SpecRoutes } from './spec-routes.ts';
import { swaggerRouteLabel, swaggerRoutes } from './swagger.ts';

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
  /** express `trust proxy` (TRUST_PROXY); default false: the socket's peer is the client. */
  trustProxy?: TrustProxy;
}

/** Batch of 1000 messages of 160 characters, with room for JSON and multi-byte text. */
const bodyLimit = '2mb';

/** Paths that never need an API key: probes, metrics and the Swagger UI. */
const publicPaths = /^\/(health-alive|health-check|metrics|swagger)(\/|$)/;

/**
 * The HTTP app, in the order a request meets it: security headers; request id,
 * log line and latency metric; the URL's text checked; 405 for a method the
 * path does not have (HEAD served as GET); probes, metrics and Swagger UI (no
 * key); API key; intake rate limit; the JSON body decoded; the OpenAPI
 * validator (bodies strictly typed, query and path parameters parsed from
 * their text); the routes; 404; the one error handler.
 */
export function createApp(deps: AppDependencies): Express {
  const app = express();
  app.disable('x-powered-by');
  // No conditional answers: a 304 is a status no operation documents, and every answer here (jobs,
  // messages, health, metrics) is live state, not a cacheable document. So no ETags, and a request's
  // If-None-Match (even `*`) or If-Modified-Since never makes express answer 304 instead.
  app.set('etag', false);
  Object.defineProperty(app.request, 'fresh', { configurable: true, get: () => false });
  app.set('trust proxy', deps.trustProxy ?? false);
  const spec = parse(readFileSync(openApiPath, 'utf8'));
  const routes = compileSpecRoutes(spec);

  app.use(securityHeaders());
  app.use(requestContext(deps.logger, deps.metrics, routes));
  app.use(rejectInvalidUrlText);
  app.use(methodCheck(routes));
  app.use(healthRoutes(deps.health));
  app.get('/metrics', async (_req, res) => {
    res.type(deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics());
  });
  app.use(swaggerRoutes(spec));

  app.use(requireApiKey(deps.apiKeys));
  const limitIntake = intakeRateLimit(deps.intakePerMinute);
  app.use((req, res, next) =>
    req.method === 'POST' && (req.path === '/messages' || req.path === '/messages/batch')
      ? limitIntake(req, res, next)
      : next(),
  );
  app.use(jsonBody(bodyLimit, (req) => routes.match(req.path)?.operations.get(req.method)?.hasBody === true));
  app.use(requireBody(routes));
  app.use(strictQueryText(routes));
  app.use(
    OpenApiValidator.middleware({
      apiSpec: openApiPath,
      // Bodies are JSON and must carry the spec's types exactly; query and path
      // parameters are text and are still parsed into numbers (the validator
      // always coerces those).
      validateRequests: { allowUnknownQueryParameters: false, coerceTypes: false },
      validateResponses: false,
      // API keys are checked by auth.ts whatever the spec's `security` says (it may be off).
      validateSecurity: false,
      ignorePaths: publicPaths,
    }),
  );
  app.use(jobRoutes(deps.jobs));
  app.use(messageRoutes(deps.messages, deps.idempotency, deps.apiKeys));
  app.use(notFound);
  app.use(errorHandler(deps.logger));
  return app;
}

const standardMethods = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT']);

/**
 * The bounded `route` label of a request: its OpenAPI path template,
 * `/swagger/*`, or `unmatched`. Never the raw path, so no client can grow
 * the metric's series.
 */
export function routeLabel(path: string, routes: SpecRoutes): string {
  const matched = routes.match(path);
  if (matched) return matched.template;
  if (path === '/swagger' || path.startsWith('/swagger/')) return swaggerRouteLabel;
  return 'unmatched';
}

/** Request id (honoured or generated, echoed back), one log line and one latency sample per request. */
function requestContext(logger: Logger, metrics: Metrics, routes: SpecRoutes): RequestHandler {
  return (req, res, next) => {
    const incoming = req.get('x-request-id');
    const requestId = incoming && /^[\w.:-]{1,128}$/.test(incoming) ? incoming : randomUUID();
    res.setHeader('X-Request-Id', requestId);
    const method = standardMethods.has(req.method) ? req.method : 'OTHER';
    const route = routeLabel(req.path, routes);
    const started = performance.now();
    res.on('finish', () => {
      const seconds = (performance.now() - started) / 1000;
      metrics.httpDuration.observe({ method, route, status_code: String(res.statusCode) }, seconds);
      const level =
        res.statusCode >= 500 ? 'error' : req.path.startsWith('/health') || req.path === '/metrics' ? 'debug' : 'info';
      logger[level](
        { requestId, method, route, status: res.statusCode, durationMs: Math.round(seconds * 1000), ip: req.ip },
        'request',
      );
    });
    next();
  };
}

/**
 * For the API's own paths: a method the path does not have is 405 with
 * `Allow`; HEAD is answered as GET (Node sends the headers, never the body).
 */
function methodCheck(routes: SpecRoutes): RequestHandler {
  return (req, _res, next) => {
    const route: SpecRoute | undefined = routes.match(req.path);
    if (!route) return next();
    if (req.method === 'HEAD' && route.operations.has('GET')) {
      req.method = 'GET';
      return next();
    }
    if (route.operations.has(req.method)) return next();
    next(
      new AppError(405, 'method_not_allowed', `${req.method} is not allowed on ${route.template}`, {
        Allow: route.allow,
      }),
    );
  };
}

/**
 * A request without a body to an operation whose body is required: 400 `missing_body`, not 415.
 * To an operation whose body is optional it is simply a request without one (`PUT /jobs/stop`:
 * every job), whatever Content-Type a client put on the nothing it sent.
 */
function requireBody(routes: SpecRoutes): RequestHandler {
  return (req, _res, next) => {
    const operation = routes.match(req.path)?.operations.get(req.method);
    if (operation?.hasBody && req.body === undefined && !hasBody(req)) {
      if (operation.bodyRequired) {
        return next(
          new ValidationError(
            'missing_body',
            'request body is required: a JSON object with Content-Type: application/json',
          ),
        );
      }
      // The validator would judge the label of a body that is not there (415).
      delete req.headers['content-type'];
    }
    next();
  };
}
