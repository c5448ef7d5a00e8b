import type { Request, RequestHandler } from 'express';
import type { operations } from '../api/openapi.ts';
import { ValidationError } from '../errors.ts';
import type { JobService } from '../jobs/job-service.ts';
import type { IdempotencyStore, StoredResponse } from '../messages/idempotency.ts';
import type { MessageService, MessageStatus, Queryable } from '../messages/message-service.ts';
import { type HealthCheck, runHealthChecks } from '../observability/health.ts';
import type { Metrics } from '../observability/metrics.ts';
import { formatTraceparent } from '../observability/trace-context.ts';
import { type Span, type Tracing, untraced } from '../observability/tracing.ts';
import { consolePage } from './console.ts';
import { idempotent } from './idempotency.ts';
import { serverSpanOf, withServerSpan } from './request-span.ts';

/**
 * The route table: one handler per operation of openapi.yaml, keyed by its
 * `operationId`. Where an operation is served (path, method, whether it needs
 * an API key, its body and query rules) is read from openapi.yaml itself
 * (spec-routes.ts), so the table holds only what each operation does.
 */

/** An `operationId` of openapi.yaml (the generated `operations` type has one key per operation). */
export type OperationId = keyof operations;

/** Exactly one express handler per operation: a missing or an unknown operationId does not compile. */
export type OperationHandlers = { readonly [Id in OperationId]: RequestHandler };

/** Message intake: the operations the intake rate limit (INTAKE_RATE_LIMIT_PER_MINUTE) counts. */
export const intakeOperations: ReadonlySet<string> = new Set<OperationId>(['createMessage', 'createMessageBatch']);

export interface OperationDependencies {
  jobs: JobService;
  messages: MessageService;
  /** Idempotency-Key records of message intake. */
  idempotency: IdempotencyStore;
  /** Readiness checks reported by `GET /health-check`. */
  health: HealthCheck[];
  metrics: Metrics;
  /** The API keys in force now (the idempotency key scope is per API key); read per request. */
  apiKeys: () => string[];
  /** Intake requests get a server span; the messages continue it. Default: untraced (ids, no export). */
  tracing?: Tracing;
}

/** Milliseconds one readiness check may take before it counts as down. */
const healthCheckTimeoutMs = 2_000;

/** The route table of this service. Handlers answer JSON; their errors reach the app's one error handler. */
export function operationHandlers(deps: OperationDependencies): OperationHandlers {
  const { jobs, messages, metrics } = deps;
  const tracing = deps.tracing ?? untraced;
  /** An intake route: idempotent, in a server span whose context the stored messages continue. */
  const intake = (
    route: string,
    work: (req: Request, db: Queryable | undefined, traceParent: string, span: Span) => Promise<StoredResponse>,
  ) =>
    withServerSpan(
      tracing,
      route,
      idempotent(deps.idempotency, deps.apiKeys, (req, db) => {
        const span = serverSpanOf(req);
        return work(req, db, formatTraceparent(span.context), span);
      }),
    );
  return {
    healthAlive: (_req, res) => {
      res.json({ status: 'alive' });
    },
    healthCheck: async (_req, res) => {
      const report = await healthReport(deps.health);
      res.status(report.status === 'degraded' ? 503 : 200).json(report);
    },
    metrics: async (_req, res) => {
      res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
    },
    getConsole: (_req, res) => {
      res
        .type('html')
        .set('Cache-Control', 'no-cache')
        .send(consolePage(deps.apiKeys().length > 0));
    },
    startJobs: async (req, res) => {
      res.json({ jobs: await jobs.start(req.body?.name) });
    },
    stopJobs: async (req, res) => {
      res.json({ jobs: await jobs.stop(req.body?.name) });
    },
    listJobs: async (_req, res) => {
      res.json({ jobs: await jobs.list() });
    },
    createJob: async (req, res) => {
      res.status(201).json(await jobs.create(req.body));
    },
    getJob: async (req, res) => {
      res.json(await jobs.get(pathParameter(req, 'name')));
    },
    updateJob: async (req, res) => {
      res.json(await jobs.update(pathParameter(req, 'name'), req.body));
    },
    createMessage: intake('/messages', async (req, db, traceParent, span) => {
      const message = await messages.create(req.body, db, traceParent);
      span.setAttributes({ 'messaging.message.id': message.id });
      return { status: 201, body: message };
    }),
    createMessageBatch: intake('/messages/batch', async (req, db, traceParent, span) => {
      const items = await messages.createBatch(req.body.messages, db, traceParent);
      span.setAttributes({ 'messaging.batch.message_count': items.length });
      return { status: 201, body: { items } };
    }),
    listMessages: async (req, res) => {
      const status = req.query.status as MessageStatus | undefined;
      // An unencoded "+" in a query string arrives as a space (`?to=+90555…`); read it as the "+" it was.
      const to = typeof req.query.to === 'string' ? req.query.to.replace(/^ (?=\d)/, '+') : undefined;
      res.json(await messages.list({ status, to }, limitOf(req.query.limit), cursorOf(req.query.cursor)));
    },
    listSentMessages: async (req, res) => {
      res.json(await messages.listSent(limitOf(req.query.limit), cursorOf(req.query.cursor)));
    },
    getMessage: async (req, res) => {
      res.json(await messages.get(pathParameter(req, 'id')));
    },
    listMessageAttempts: async (req, res) => {
      res.json(
        await messages.listAttempts(pathParameter(req, 'id'), limitOf(req.query.limit), cursorOf(req.query.cursor)),
      );
    },
    cancelMessage: async (req, res) => {
      res.json(await messages.cancel(pathParameter(req, 'id')));
    },
    retryMessage: async (req, res) => {
      res.json(await messages.retry(pathParameter(req, 'id')));
    },
    retryFailedMessages: async (req, res) => {
      const range = (req.body ?? {}) as { since?: string; until?: string };
      res.json({ retried: await messages.retryFailed({ since: range.since, until: range.until }) });
    },
  };
}

/**
 * Runs every readiness check at once, each bounded by 2 s (a timeout or a
 * rejection reads `down`). Degraded when a critical check is down.
 */
async function healthReport(checks: HealthCheck[]): Promise<{ status: 'ok' | 'degraded'; checks: object }> {
  const results = await runHealthChecks(checks, healthCheckTimeoutMs);
  const degraded = results.some((result) => result.critical && !result.ok);
  return {
    status: degraded ? 'degraded' : 'ok',
    checks: Object.fromEntries(results.map((result) => [result.name, result.state])),
  };
}

/** A path parameter (`{name}`, `{id}`): the text of the one path segment it matched. */
function pathParameter(req: Request, name: string): string {
  return req.params[name] as string;
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

/** The keyset pagination cursor of a list request; an empty `cursor=` is the first page. */
function cursorOf(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}
