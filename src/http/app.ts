import { randomUUID } from 'node:crypto';
import express, { type Express, type Request, type RequestHandler } from 'express';
import * as OpenApiValidator from 'express-openapi-validator';
import type { LiveSettings } from '../config/live-config.ts';
import { AppError, ValidationError } from '../errors.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { requireApiKey } from './auth.ts';
import { consoleAssetRoutes, consolePathPrefix, consoleRouteLabel } from './console.ts';
import { errorHandler, hasBody, notFound } from './errors.ts';
import { jsonBody, rejectInvalidUrlText } from './input-decoding.ts';
import {
  intakeOperations,
  type OperationDependencies,
  type OperationHandlers,
  operationHandlers,
} from './operations.ts';
import { strictQueryText } from './query-params.ts';
import { intakeRateLimit } from './rate-limit.ts';
import { securityHeaders } from './security-headers.ts';
import {
  compileSpecRoutes,
  type OpenApiDocument,
  type SpecOperation,
  type SpecRoute,
  type SpecRoutes,
} from './spec-routes.ts';
import { swaggerPathPrefix, swaggerRouteLabel, swaggerRoutes } from './swagger.ts';

export interface AppDependencies extends Omit<OperationDependencies, 'apiKeys'> {
  logger: Logger;
}

/** Batch of 1000 messages of 160 characters, with room for JSON and multi-byte text. */
const bodyLimit = '2mb';

/**
 * The HTTP app, in the order a request meets it: security headers; request id,
 * log line and latency metric; the URL's text checked; 405 for a method the
 * path does not have (HEAD served as GET); the operations that need no key
 * (probes, metrics, the console page), Swagger UI and the console's assets; API key; intake rate limit; the JSON body
 * decoded; a required body that is missing; the query's text; the OpenAPI
 * validator (bodies strictly typed, query and path parameters parsed from
 * their text); the operations of the route table; 404; the one error handler.
 *
 * Every route comes from `spec` (the parsed openapi.yaml, read once) and the
 * route table (operations.ts). `settings.current` is read per request for the
 * API keys and the intake rate limit, so a live change applies at once;
 * `trustProxy` is read here (it applies at restart).
 * @throws Error when the spec and the route table do not name the same operations
 */
export function createApp(settings: LiveSettings, spec: OpenApiDocument, deps: AppDependencies): Express {
  const app = express();
  app.disable('x-powered-by');
  // No conditional answers: a 304 is a status no operation documents, and every answer here (jobs,
  // messages, health, metrics) is live state, not a cacheable document. So no ETags, and a request's
  // If-None-Match (even `*`) or If-Modified-Since never makes express answer 304 instead.
  app.set('etag', false);
  Object.defineProperty(app.request, 'fresh', { configurable: true, get: () => false });
  app.set('trust proxy', settings.current.trustProxy ?? false);
  const routes = compileSpecRoutes(spec);
  const apiKeys = () => settings.current.apiKeys;
  const handlers = operationHandlers({ ...deps, apiKeys });
  checkRouteTable(routes, handlers);

  app.use(securityHeaders());
  app.use(requestContext(deps.logger, deps.metrics, routes));
  app.use(rejectInvalidUrlText);
  app.use(methodCheck(routes));
  mountOperations(app, routes, handlers, (operation) => operation.public);
  app.use(swaggerRoutes(spec));
  app.use(consoleAssetRoutes());

  app.use(requireApiKey(apiKeys));
  const limitIntake = intakeRateLimit(() => settings.current.intakeRateLimitPerMinute);
  app.use((req, res, next) => (isIntake(routes, req) ? limitIntake(req, res, next) : next()));
  app.use(jsonBody(bodyLimit, (req) => routes.operation(req.method, req.path)?.hasBody === true));
  app.use(requireBody(routes));
  app.use(strictQueryText(routes));
  app.use(
    OpenApiValidator.middleware({
      apiSpec: spec as Parameters<typeof OpenApiValidator.middleware>[0]['apiSpec'],
      // Bodies are JSON and must carry the spec's types exactly; query and path
      // parameters are text and are still parsed into numbers (the validator
      // always coerces those).
      validateRequests: { allowUnknownQueryParameters: false, coerceTypes: false },
      validateResponses: false,
      // API keys are checked by auth.ts whatever the spec's `security` says (it may be off).
      validateSecurity: false,
      ignorePaths: publicPaths(routes),
    }),
  );
  mountOperations(app, routes, handlers, (operation) => !operation.public);
  app.use(notFound);
  app.use(errorHandler(deps.logger));
  return app;
}

/**
 * A request the intake rate limit counts: a message intake operation
 * (operations.ts), at whichever path express serves it (`POST /messages/`
 * with its trailing slash too).
 */
function isIntake(routes: SpecRoutes, req: Request): boolean {
  return intakeOperations.has(routes.operation(req.method, req.path)?.operationId ?? '');
}

/**
 * Serves each operation `which` selects at its path and method, literal paths
 * first (`/messages/sent` before `/messages/{id}`), with express's own
 * matching (case-insensitive, one trailing slash tolerated, HEAD by GET).
 */
function mountOperations(
  app: Express,
  routes: SpecRoutes,
  handlers: OperationHandlers,
  which: (operation: SpecOperation) => boolean,
): void {
  for (const route of routes.all) {
    const path = route.template.replace(/\{([^}]+)\}/g, ':$1');
    for (const operation of route.operations.values()) {
      if (!which(operation)) continue;
      const handler = handlers[operation.operationId as keyof OperationHandlers];
      app[operation.method.toLowerCase() as 'get'](path, handler);
    }
  }
}

/**
 * The route table's type names the operations of the generated types
 * (src/api/openapi.ts); this holds the spec that is read at start to the same
 * names, so a spec edited without regenerating them fails at start.
 * @throws Error naming the operations only one side has
 */
function checkRouteTable(routes: SpecRoutes, handlers: OperationHandlers): void {
  const inSpec = routes.all.flatMap((route) => [...route.operations.values()].map((op) => op.operationId));
  const unserved = inSpec.filter((id) => !Object.hasOwn(handlers, id));
  const undocumented = Object.keys(handlers).filter((id) => !inSpec.includes(id));
  if (unserved.length > 0 || undocumented.length > 0) {
    throw new Error(
      `openapi.yaml and the route table disagree: no handler for [${unserved.join(', ')}], not in openapi.yaml: [${undocumented.join(', ')}]`,
    );
  }
}

/**
 * The validator's `ignorePaths`: the (literal) paths of the operations that
 * need no key and Swagger UI's, each with anything below it. Those are
 * answered before the API key, or are 404s the validator need not judge.
 */
function publicPaths(routes: SpecRoutes): RegExp {
  const templates = routes.all
    .filter((route) => [...route.operations.values()].some((operation) => operation.public))
    .map((route) => route.template);
  const alternatives = [...templates, swaggerPathPrefix].map((path) =>
    path.slice(1).replace(/[.*+?^${}()|[\]\\]/g, '\\$&'),
  );
  return new RegExp(`^/(${alternatives.join('|')})(/|$)`);
}

const standardMethods = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT']);

/**
 * The bounded `route` label of a request: its OpenAPI path template,
 * `/swagger/*`, `/console/*` (the console's assets), or `unmatched`. Never the raw path, so no client can grow
 * the metric's series.
 */
export function routeLabel(path: string, routes: SpecRoutes): string {
  const matched = routes.match(path);
  if (matched) return matched.template;
  if (path === swaggerPathPrefix || path.startsWith(`${swaggerPathPrefix}/`)) return swaggerRouteLabel;
  if (path.startsWith(`${consolePathPrefix}/`)) return consoleRouteLabel;
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
    const operation = routes.operation(req.method, req.path);
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
