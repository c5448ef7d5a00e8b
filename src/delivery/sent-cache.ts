import { withTimeout } from '../lib/with-timeout.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';

/**
 * Optional Redis cache of sent messages: key `job-manager:sent:<message id>`
 * holds `{"messageId", "sentAt"}` for REDIS_TTL_SECONDS. PostgreSQL stays the
 * source of truth: a Redis outage is logged, counted and shown in
 * /health-check, and never blocks or fails sending.
 */
export interface SentCache {
  remember(entries: SentEntry[]): Promise<void>;
  /** "ok", "disabled", or throws when Redis is unreachable. */
  check(): Promise<string>;
  close(): Promise<void>;
}

export interface SentEntry {
  id: string;
  externalMessageId: string;
  sentAt: string;
}

export const sentKey = (id: string) => `job-manager:sent:${id}`;

export const disabledSentCache: SentCache = {
  remember: async () => {},
  check: async () => 'disabled',
  close: async () => {},
};

export async function connectSentCache(
  url: string,
  ttlSeconds: number,
  logger: Logger,
  metrics: Metrics,
): Promise<SentCache> {
  const log = logger.child({ component: 'redis' });
  let lastErrorLog = 0;
  // Loaded only with REDIS_URL: a pod without the cache does not pay the client's memory (about 20 MB).
  const { createClient } = await import('redis');
  const client = createClient({
    url,
    // Fail fast while disconnected instead of queueing commands behind a dead socket.
    disableOfflineQueue: true,
    socket: { connectTimeout: 2_000, reconnectStrategy: (retries) => Math.min(250 * 2 ** retries, 10_000) },
  });
  client.on('error', (error) => {
    // The client retries forever; one line every 30 s is enough to see it.
    if (Date.now() - lastErrorLog > 30_000) {
      lastErrorLog = Date.now();
      log.warn({ err: error }, 'Redis unavailable; sending continues without the cache');
    }
  });
  // Not awaited: a Redis that is down at start-up must not hold the service back.
  client.connect().catch(() => {});

  return {
    async remember(entries) {
      if (entries.length === 0) return;
      try {
        // While disconnected, do not wait for a timeout on every batch.
        if (!client.isReady) throw new Error('Redis is not connected');
        const batch = client.multi();
        for (const entry of entries) {
          batch.set(sentKey(entry.id), JSON.stringify({ messageId: entry.externalMessageId, sentAt: entry.sentAt }), {
            expiration: { type: 'EX', value: ttlSeconds },
          });
        }
        await withTimeout(batch.exec(), 2_000);
      } catch (error) {
        metrics.redisErrors.inc();
        if (Date.now() - lastErrorLog > 30_000) {
          lastErrorLog = Date.now();
          log.warn({ err: error, entries: entries.length }, 'could not cache sent messages in Redis');
        }
      }
    },
    async check() {
      await withTimeout(client.ping(), 1_000);
      return 'ok';
    },
    async close() {
      client.destroy();
    },
  };
}
