/**
 * The delivery side as the rest of the service holds it: the current
 * delivery client (dry-run without WEBHOOK_URL, the webhook client with it),
 * rebuilt when a live change touches a setting the client uses, and its
 * readiness check (`delivery` in `/health-check`, DESIGN.md "Webhook
 * contract": dry-run is loud, the breaker's state is visible).
 */
import type { Config } from '../config/config.ts';
import type { HealthCheck } from '../observability/health.ts';
import type { Logger } from '../observability/logger.ts';
import type { CircuitBreaker } from './policies/circuit-breaker.ts';
import { createWebhookSigner } from './signing.ts';
import { createDryRunClient, createWebhookClient, type DeliveryClient } from './webhook.ts';

export type WebhookSettings = Config['webhook'];

export interface Delivery {
  /** The client to use now; runs take it at their start, so a rebuilt client serves the next run. */
  readonly client: DeliveryClient;
  /**
   * Takes validated live settings. The client is rebuilt (and the old one
   * closed once its requests end) only when its URL, auth header, timeout or
   * signing secrets change; the rest (attempts, backoff, breaker, rate limit)
   * is read per run elsewhere.
   */
  reconfigure(settings: WebhookSettings): Promise<void>;
  /** "dry-run", "webhook" (breaker closed), or the breaker's "open" / "half-open"; never critical. */
  readonly health: HealthCheck;
  close(): Promise<void>;
}

/** @throws Error when WEBHOOK_URL is not http(s) (config validation already refuses it). */
export function createDelivery(settings: WebhookSettings, breaker: CircuitBreaker, logger: Logger): Delivery {
  let current = buildClient(settings, logger);
  let currentKey = clientKey(settings);
  return {
    get client() {
      return current;
    },
    async reconfigure(next) {
      const key = clientKey(next);
      if (key === currentKey) return;
      const old = current;
      current = buildClient(next, logger);
      currentKey = key;
      await old.close();
    },
    health: {
      name: 'delivery',
      critical: false,
      check: async () => (current.mode === 'webhook' && breaker.state !== 'closed' ? breaker.state : current.mode),
    },
    close: () => current.close(),
  };
}

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
  });
}
