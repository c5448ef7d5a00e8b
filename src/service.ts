import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { PgBoss } from 'pg-boss';
import { type Config, ConfigError, unauthenticatedExposure } from './config/config.ts';
import { type Database, openDatabase } from './db/database.ts';
import { migrate } from './db/migrator.ts';
import { ping } from './db/sqlc/health_sql.ts';
import { countJobsByStatus, releaseJobLeases } from './db/sqlc/jobs_sql.ts';
import { countPendingMessages } from './db/sqlc/messages_sql.ts';
import { createApp } from './http/app.ts';
import type { HealthCheck } from './http/routes/health.ts';
import { Fetcher } from './jobs/fetcher.ts';
import { JobService } from './jobs/job-service.ts';
import { runQueueName, startRunQueue } from './jobs/run-queue.ts';
import { MessageService } from './messages/message-service.ts';
import { connectSentCache, disabledSentCache, type SentCache } from './messages/sent-cache.ts';
import { createDryRunClient, createWebhookClient, type DeliveryClient } from './messages/webhook-client.ts';
import type { Logger } from './observability/logger.ts';
import { createMetrics, type Metrics } from './observability/metrics.ts';
import type { JobHandler } from './workers/handler.ts';
import { HandlerFactory } from './workers/handler-factory.ts';
import { sendMessagesHandler } from './workers/handlers/send-messages.ts';
import { RunExecutor } from './workers/run-executor.ts';
import { WorkerPool } from './workers/worker-pool.ts';

export interface ServiceOptions {
  /** Extra handlers by name (tests register their own). */
  handlers?: Record<string, JobHandler>;
  /** Extra readiness checks (the Vault layer adds its own). */
  healthChecks?: HealthCheck[];
}

export interface Service {
  port: number;
  metrics: Metrics;
  database: Database;
  /** Applies the settings that can change while running (schema.ts `liveSettings`); the rest wait for a restart. */
  applyConfig(next: Config): Promise<void>;
  stop(): Promise<void>;
}

/**
 * The composition root: builds every part from the configuration, in
 * dependency order, and tears them down in reverse.
 */
export async function startService(initial: Config, logger: Logger, options: ServiceOptions = {}): Promise<Service> {
  let config = initial;
  const metrics = createMetrics();
  const cleanup: Array<() => Promise<void>> = [];
  const closeAll = async () => {
    for (const step of cleanup.reverse())
      await step().catch((error) => logger.error({ err: error }, 'shutdown step failed'));
  };
  try {
    const database = await openDatabase(config, logger);
    cleanup.push(() => database.close());
    await migrate(database.pool, logger);
    const { pool } = database;

    let delivery = createDelivery(config, logger);
    cleanup.push(() => delivery.close());
    const cache: SentCache = config.redis.url
      ? await connectSentCache(config.redis.url, config.redis.ttlSeconds, logger, metrics)
      : disabledSentCache;
    cleanup.push(() => cache.close());

    const handlers = new HandlerFactory({
      'send-messages': sendMessagesHandler(
        pool,
        () => delivery,
        () => cache,
        {
          instanceId: config.instanceId,
          messageLeaseSeconds: config.messageLeaseSeconds,
          concurrency: () => config.webhook.concurrency,
          maxAttempts: () => config.webhook.maxAttempts,
          timeoutMs: () => config.webhook.timeoutMs,
          backoff: () => ({ baseMs: config.webhook.retryBaseMs, maxMs: config.webhook.retryMaxMs }),
        },
        metrics,
      ),
      ...options.handlers,
    });

    const boss = await startRunQueue(
      { connectionString: database.url, instanceId: config.instanceId, runTimeoutSeconds: 3_600 },
      logger,
    );
    cleanup.push(() => boss.stop({ graceful: false, close: true, timeout: 5_000 }));

    let fetcher: Fetcher | undefined;
    const executor = new RunExecutor(pool, handlers, config, logger, metrics, () => fetcher?.wake());
    const workers = new WorkerPool(boss, executor, logger);
    fetcher = new Fetcher(pool, boss, config, logger, {
      onClaimed: () => workers.notify(),
      onError: () => metrics.fetchErrors.inc(),
    });
    await workers.start(config.workerCount);
    await fetcher.start(database.url);
    const runningFetcher = fetcher;
    cleanup.push(async () => {
      // Reverse order: HTTP (closed first, below), then fetcher, then runs in flight.
      await runningFetcher.stop();
      await workers.stop(config.shutdownTimeoutMs);
      const released = (await releaseJobLeases(pool, { owner: config.instanceId })).length;
      if (released > 0) logger.info({ released }, 'released leases of unfinished runs');
    });

    metrics.setCollectors({
      pendingMessages: async () => Number((await countPendingMessages(pool))?.total ?? 0),
      jobsByStatus: async () =>
        Object.fromEntries((await countJobsByStatus(pool)).map((row) => [row.status, Number(row.total)])),
    });

    const jobs = new JobService(pool, handlers);
    const messages = new MessageService(pool, config.messageMaxLength);
    const health: HealthCheck[] = [
      { name: 'database', critical: true, check: async () => ((await ping(pool)) ? 'ok' : 'down') },
      { name: 'queue', critical: true, check: () => queueState(boss) },
      { name: 'redis', critical: false, check: () => cache.check() },
      // main.ts replaces this with the Vault watcher's own check.
      { name: 'vault', critical: false, check: async () => 'disabled' },
      { name: 'delivery', critical: false, check: async () => delivery.mode },
    ].map((check) => options.healthChecks?.find((extra) => extra.name === check.name) ?? check);
    health.push(...(options.healthChecks ?? []).filter((extra) => !health.some((check) => check.name === extra.name)));
    const app = createApp({
      jobs,
      messages,
      health,
      metrics,
      logger,
      apiKeys: () => config.apiKeys,
      intakePerMinute: () => config.intakeRateLimitPerMinute,
      trustProxy: config.trustProxy,
    });
    const server = await listen(app, config.port, config.host);
    cleanup.push(() => closeServer(server));
    const port = (server.address() as AddressInfo).port;
    logger.info(
      {
        host: config.host,
        port,
        workers: config.workerCount,
        delivery: delivery.mode,
        database: database.embedded ? 'embedded' : 'external',
      },
      'job-manager is up',
    );
    if (config.apiKeys.length === 0) {
      logger.warn(
        { host: config.host, port },
        `no API_KEYS: the API needs no key; listening on ${config.host}:${port} only${config.allowUnauthenticated ? ' (ALLOW_UNAUTHENTICATED=true)' : ''}`,
      );
    }

    return {
      port,
      metrics,
      database,
      async applyConfig(next) {
        const previous = config;
        const restartOnly = {
          port: previous.port,
          host: previous.host,
          allowUnauthenticated: previous.allowUnauthenticated,
          trustProxy: previous.trustProxy,
          databaseUrl: previous.databaseUrl,
          dataDir: previous.dataDir,
        };
        // Removing every API key while bound to the network would open the API: refuse it.
        if (unauthenticatedExposure({ ...next, ...restartOnly })) {
          throw new ConfigError(
            'API_KEYS',
            `cannot be emptied while the service listens on ${previous.host}, which is not a loopback address (restart with HOST=127.0.0.1, or set ALLOW_UNAUTHENTICATED=true)`,
          );
        }
        config = { ...next, ...restartOnly };
        logger.level = config.logLevel;
        messages.setMaxLength(config.messageMaxLength);
        fetcher?.setFetchInterval(config.fetchIntervalMs);
        if (JSON.stringify(previous.webhook) !== JSON.stringify(config.webhook)) {
          const old = delivery;
          delivery = createDelivery(config, logger);
          await old.close();
        }
        await workers.resize(config.workerCount);
      },
      stop: closeAll,
    };
  } catch (error) {
    await closeAll();
    throw error;
  }
}

function createDelivery(config: Config, logger: Logger): DeliveryClient {
  if (!config.webhook.url) {
    logger.warn(
      'WEBHOOK_URL is not set: DRY-RUN delivery. Messages are marked sent with a dryrun-… id and go nowhere.',
    );
    return createDryRunClient();
  }
  return createWebhookClient({
    url: config.webhook.url,
    authHeader: config.webhook.authHeader,
    authValue: config.webhook.authValue,
    timeoutMs: config.webhook.timeoutMs,
  });
}

async function queueState(boss: PgBoss): Promise<string> {
  await boss.getQueue(runQueueName);
  return 'ok';
}

function listen(app: ReturnType<typeof createApp>, port: number, host: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = app.listen(port, host, (error?: Error) => (error ? reject(error) : resolve(server)));
    server.keepAliveTimeout = 65_000;
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
    setTimeout(() => server.closeAllConnections(), 5_000).unref();
  });
}
