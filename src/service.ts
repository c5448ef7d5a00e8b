import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Config, ConfigError } from './config/config.ts';
import type { ConfigListener, LiveSettings } from './config/live-config.ts';
import { isLoopbackHost, listenHost } from './config/network.ts';
import { type Database, migrateWhenReachable, openDatabase, resizePool } from './db/database.ts';
import { createDelivery } from './delivery/delivery.ts';
import { createEngine, type Engine, type JobHandler } from './engine/engine.ts';
import { createApp } from './http/app.ts';
import { createHttpServer } from './http/server.ts';
import { JobService } from './jobs/job-service.ts';
import { IdempotencyStore, startIdempotencyKeyPurge } from './messages/idempotency.ts';
import { MessageService } from './messages/message-service.ts';
import type { HealthCheck } from './observability/health.ts';
import type { Logger } from './observability/logger.ts';
import { createMetrics, type Metrics } from './observability/metrics.ts';

export interface ServiceOptions {
  /** Extra handlers by name (tests register their own). */
  handlers?: Record<string, JobHandler>;
  /** Extra readiness checks (the Vault layer adds its own); one with a built-in name replaces it. */
  healthChecks?: HealthCheck[];
  /** Build everything but do not start the engine (tests drive it with `engine.runOnce()`). */
  startEngine?: boolean;
}

export interface Service {
  port: number;
  metrics: Metrics;
  database: Database;
  engine: Engine;
  /** Refuses a live change this running process cannot take (LiveConfig calls it before applying). @throws ConfigError */
  checkConfig(next: Config): void;
  /**
   * Applies a configuration that LiveConfig validated (restart-only settings
   * already pinned at their running values): log level, message limit,
   * scheduler poll, webhook client, pool and worker pool size.
   */
  applyConfig(next: Config): Promise<void>;
  /**
   * Stops everything in reverse order of start. Runs in flight get until
   * `deadline` (epoch ms; default now + SHUTDOWN_TIMEOUT_MS), then their
   * webhook requests are aborted and their messages handed back.
   */
  stop(deadline?: number): Promise<void>;
}

/**
 * The composition root: builds every part from the configuration, in
 * dependency order, wires them, and tears them down in reverse. It runs no
 * SQL and holds no behaviour of its own; each component brings its health
 * check, gauges and shutdown step.
 */
export async function startService(initial: Config, logger: Logger, options: ServiceOptions = {}): Promise<Service> {
  let config = initial;
  const metrics = createMetrics();
  const cleanup: Array<(deadline: number) => Promise<void>> = [];
  const closeAll = async (deadline = Date.now() + config.shutdownTimeoutMs) => {
    for (const step of cleanup.reverse())
      await step(deadline).catch((error) => logger.error({ err: error }, 'shutdown step failed'));
  };
  try {
    const database = await openDatabase(config, logger);
    cleanup.push((deadline) => database.close(deadline));
    await migrateWhenReachable(database, config.database.startTimeoutMs, logger);
    const { pool } = database;

    // Delivery subscribes to the live settings it uses itself. startService is handed a Config, not the
    // LiveSettings, so this stand-in follows `config` and applyConfig tells it of each change.
    const liveListeners: ConfigListener[] = [];
    const live: LiveSettings = {
      get current() {
        return config;
      },
      onChange: (listener) => void liveListeners.push(listener),
      addGuard: () => {},
    };
    const delivery = await createDelivery(live, { pool, metrics, logger });
    cleanup.push(() => delivery.close());
    // The `send-messages` handler: a thin adapter from the engine's run context to one delivery run.
    const sendMessages: JobHandler = {
      run: ({ runId, executionId, batchSize, signal, deadline, logger: runLogger }) =>
        delivery.run({ runId, executionId, batchSize, signal, deadline, logger: runLogger }),
    };

    const engine = await createEngine(config, {
      pool,
      databaseUrl: database.url,
      connectionBounds: database.bounds,
      handlers: {
        'send-messages': sendMessages,
        ...options.handlers,
      },
      logger,
      metrics,
    });
    if (options.startEngine !== false) await engine.start();
    cleanup.push((deadline) => engine.stop(deadline));

    const jobs = new JobService(pool, engine.handlers);
    const messages = new MessageService(pool, config.messageMaxLength);
    const idempotency = new IdempotencyStore(pool);
    const purge = startIdempotencyKeyPurge(pool, logger);
    cleanup.push(() => purge.stop());
    metrics.setCollectors({
      pendingMessages: () => messages.countPending(),
      jobsByStatus: () => jobs.countByStatus(),
      jobNames: async () => (await jobs.list()).map((job) => job.name),
      deliveryPauseMs: () => delivery.pauseRemainingMs(),
    });

    const builtIn: HealthCheck[] = [
      database.health,
      engine.health,
      delivery.cacheHealth,
      // main.ts replaces this with the Vault watcher's own check.
      { name: 'vault', critical: false, check: async () => 'disabled' },
      delivery.health,
    ];
    const extra = options.healthChecks ?? [];
    const health = [
      ...builtIn.map((check) => extra.find((replacement) => replacement.name === check.name) ?? check),
      ...extra.filter((check) => !builtIn.some((known) => known.name === check.name)),
    ];
    const app = createApp({
      jobs,
      messages,
      idempotency,
      health,
      metrics,
      logger,
      apiKeys: () => config.apiKeys,
      intakePerMinute: () => config.intakeRateLimitPerMinute,
      trustProxy: config.trustProxy,
    });
    const host = listenHost(config);
    const server = await listen(createHttpServer(app, logger), config.port, host);
    cleanup.push((deadline) => closeServer(server, deadline));
    const port = (server.address() as AddressInfo).port;
    // Said before "up", so anyone (or any test) waiting for "up" has already seen it.
    if (config.apiKeys.length === 0) {
      const reach = isLoopbackHost(host)
        ? `listening on ${host}:${port} only`
        : `listening on ${host}:${port}, open to the network without a key`;
      logger.warn(
        { host, port },
        `no API_KEYS: the API needs no key; ${reach}${config.allowUnauthenticated ? ' (ALLOW_UNAUTHENTICATED=true)' : ''}`,
      );
    }
    logger.info(
      {
        host,
        port,
        workers: config.workerCount,
        delivery: delivery.client.mode,
        signed: config.webhook.signingSecrets.length > 0,
        webhookRateLimitPerSecond: config.webhook.rateLimitPerSecond,
        database: database.embedded ? 'embedded' : 'external',
      },
      'job-manager is up',
    );

    return {
      port,
      metrics,
      database,
      engine,
      checkConfig(next) {
        // Emptying API_KEYS while listening beyond loopback would open the API to the network.
        if (next.apiKeys.length === 0 && !next.allowUnauthenticated && !isLoopbackHost(host)) {
          throw new ConfigError(
            'API_KEYS',
            `cannot be emptied while the service listens on ${host}, which is not a loopback address (restart with HOST=127.0.0.1, or set ALLOW_UNAUTHENTICATED=true)`,
          );
        }
      },
      async applyConfig(next) {
        config = next;
        logger.level = config.logLevel;
        messages.setMaxLength(config.messageMaxLength);
        engine.setFetchInterval(config.fetchIntervalMs);
        for (const listener of liveListeners) await listener(config);
        resizePool(pool, config.workerCount);
        await engine.resize(config.workerCount);
      },
      stop: closeAll,
    };
  } catch (error) {
    await closeAll();
    throw error;
  }
}

function listen(server: Server, port: number, host: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    server.keepAliveTimeout = 65_000;
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

/** Stops accepting; requests in flight get until a fifth of the time left (at most 5 s), then their connections close. */
function closeServer(server: Server, deadline: number): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
    const graceMs = Math.min(5_000, Math.max(0, (deadline - Date.now()) / 5));
    setTimeout(() => {
      server.closeAllConnections();
      resolve();
    }, graceMs).unref();
  });
}
