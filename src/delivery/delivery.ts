/**
 * The delivery component, as the rest of the service holds it: one facade
 * over everything that sends. It builds its parts itself (the webhook client,
 * or the dry-run client without WEBHOOK_URL; the pod's circuit breaker; the
 * outbound rate limit shared through PostgreSQL; the optional Redis sent
 * cache) and subscribes to the live settings it uses, once:
 *
 * - the client is rebuilt (the old one closed once its requests end) only
 *   when its URL, auth header, timeout or signing secrets change;
 * - the breaker takes a new WEBHOOK_BREAKER_THRESHOLD at once, the
 *   concurrency gate a new WEBHOOK_CONCURRENCY / WEBHOOK_ADAPTIVE_CONCURRENCY;
 * - a run reads its settings (lease, attempts, timeout, backoff)
 *   and the client at its start, so a change applies from the next run on;
 *   the rate limit is read at every chunk.
 *
 * Its readiness checks: `delivery` ("dry-run", "webhook", or the breaker's
 * "open" / "half-open": dry-run is loud, the breaker's state visible) and
 * `redis` ("ok", "disabled", or down); neither is critical.
 */
import type { Config } from '../config/config.ts';
import type { LiveSettings } from '../config/live-config.ts';
import type { Pool } from '../db/pool.ts';
import { withTimeout } from '../lib/with-timeout.ts';
import type { HealthCheck } from '../observability/health.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { Tracing } from '../observability/tracing.ts';
import { type DeliveryRequest, type DeliverySummary, deliverBatch } from './loop.ts';
import { CircuitBreaker, circuitBreaker, observeBreaker } from './policies/circuit-breaker.ts';
import { ConcurrencyGate, lanes } from './policies/lanes.ts';
import { leaseGuard } from './policies/lease-guard.ts';
import { createSharedDeliveryGate, rateLimit } from './policies/rate-limit.ts';
import { shutdown } from './policies/shutdown.ts';
import type { DeliveryPolicyFactory } from './policy.ts';
import { runSettings } from './run-settings.ts';
import { connectSentCache, disabledSentCache, type SentCache } from './sent-cache.ts';
import { createWebhookSigner } from './signing.ts';
import { createDryRunClient, createWebhookClient, type DeliveryClient } from './webhook.ts';

export interface DeliveryDependencies {
  pool: Pool;
  metrics: Metrics;
  /** The component's logger; a run may bring its own (DeliveryRequest.logger). */
  logger: Logger;
  /** Spans of claims and attempts; default: untraced (every webhook request still carries a `traceparent`). */
  tracing?: Tracing;
}

export interface Delivery {
  /**
   * One run of the loop (claim -> send -> settle) with the settings and client
   * current at its start. Rejects only when the database cannot be reached.
   */
  run(request: DeliveryRequest): Promise<DeliverySummary>;
  /** The client runs take now: "webhook" or "dry-run" (`client.mode`). */
  readonly client: DeliveryClient;
  /** `delivery` in /health-check: "dry-run", "webhook" (breaker closed), or "open" / "half-open"; never critical. */
  readonly health: HealthCheck;
  /** `redis` in /health-check: "ok", "disabled", or rejects while Redis is unreachable; never critical. */
  readonly cacheHealth: HealthCheck;
  /** Milliseconds left of the pause every pod observes after a Retry-After (database clock); 0: none. */
  pauseRemainingMs(): Promise<number>;
  /** Closes the cache, then the client, waiting at most 1 s for requests still open (the deadline aborted them). */
  close(): Promise<void>;
}

/**
 * Builds the component from `settings.current` and subscribes to `settings`.
 * Connecting to Redis (REDIS_URL) is not awaited: a Redis down at start-up does not hold the service back.
 * @throws Error when WEBHOOK_URL is not http(s) (configuration validation already refuses it)
 */
export async function createDelivery(settings: LiveSettings, deps: DeliveryDependencies): Promise<Delivery> {
  const { pool, metrics, logger, tracing } = deps;
  const initial = settings.current;
  const breaker = new CircuitBreaker({
    threshold: initial.webhook.breakerThreshold,
    onChange: observeBreaker(metrics, logger),
  });
  const gate = createSharedDeliveryGate(pool, { ratePerSecond: () => settings.current.webhook.rateLimitPerSecond });
  let client = buildClient(initial.webhook, logger);
  let currentKey = clientKey(initial.webhook);
  const cache: SentCache = initial.redis.url
    ? await connectSentCache(initial.redis.url, initial.redis.ttlSeconds, logger, metrics)
    : disabledSentCache;
  /** Asked in this order at every stage of the loop; lanes first, so the others judge a message when a lane takes it. */
  const slots = new ConcurrencyGate({
    ceiling: initial.webhook.concurrency,
    adaptive: initial.webhook.adaptiveConcurrency,
    onLimit: (limit) => metrics.webhookConcurrencyLimit.set(limit),
  });
  const policies: DeliveryPolicyFactory[] = [
    lanes(slots),
    shutdown,
    circuitBreaker(breaker),
    rateLimit(gate),
    leaseGuard(),
  ];
  settings.onChange(async (next) => {
    breaker.setThreshold(next.webhook.breakerThreshold);
    slots.reconfigure(next.webhook.concurrency, next.webhook.adaptiveConcurrency);
    const key = clientKey(next.webhook);
    if (key === currentKey) return;
    const old = client;
    client = buildClient(next.webhook, logger);
    currentKey = key;
    await old.close();
  });
  return {
    run: (request) =>
      deliverBatch(request, runSettings(settings.current), {
        pool,
        client,
        cache,
        metrics,
        logger,
        policies,
        tracing,
      }),
    get client() {
      return client;
    },
    health: {
      name: 'delivery',
      critical: false,
      check: async () => (client.mode === 'webhook' && breaker.state !== 'closed' ? breaker.state : client.mode),
    },
    cacheHealth: { name: 'redis', critical: false, check: () => cache.check() },
    pauseRemainingMs: () => gate.pauseRemainingMs(),
    async close() {
      try {
        await cache.close();
      } finally {
        await withTimeout(client.close(), 1_000).catch(() => {});
      }
    },
  };
}

type WebhookSettings = Config['webhook'];

/** The settings the client itself is built from; a change to any other webhook setting keeps the client. */
function clientKey(settings: WebhookSettings): string {
  const { url, authHeader, authValue, timeoutMs, signingSecrets } = settings;
  return JSON.stringify([url, authHeader, authValue, timeoutMs, signingSecrets]);
}

function buildClient(settings: WebhookSettings, logger: Logger): DeliveryClient {
  if (!settings.url) {
    logger.warn(
      'WEBHOOK_URL is not set: DRY-RUN delivery. Messages are marked sent with a dryrun-… id and go nowhere.',
    );
    return createDryRunClient();
  }
  return createWebhookClient({
    url: settings.url,
    authHeader: settings.authHeader,
    authValue: settings.authValue,
    timeoutMs: settings.timeoutMs,
    signer: settings.signingSecrets.length > 0 ? createWebhookSigner(settings.signingSecrets) : undefined,
    signingSecrets: settings.signingSecrets,
  });
}
