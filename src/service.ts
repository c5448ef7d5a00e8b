import { tracingOptions } from './config/config.ts';
import type { LiveSettings } from './config/live-config.ts';
import { type Database, openDatabase } from './db/database.ts';
import { migrate } from './db/migrator.ts';
import { createDelivery } from './delivery/delivery.ts';
import { createEngine, type Engine, type JobHandler } from './engine/engine.ts';
import { startHttpServer } from './http/index.ts';
import { JobService } from './jobs/job-service.ts';
import { withTimeout } from './lib/with-timeout.ts';
import { type MaintenanceLoop, startMaintenance } from './maintenance/maintenance.ts';
import { IdempotencyStore } from './messages/idempotency.ts';
import { MessageService } from './messages/message-service.ts';
import { createTracing } from './observability/create-tracing.ts';
import { type HealthCheck, healthStates, withReplacements } from './observability/health.ts';
import { followLogLevel, type Logger } from './observability/logger.ts';
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
  /** The maintenance loop (retention, idempotency-key purge); tests run a pass with `runPass()`. */
  maintenance: MaintenanceLoop;
  /**
   * Stops everything in reverse order of start. Runs in flight get until
   * `deadline` (epoch ms; default now + SHUTDOWN_TIMEOUT_MS), then their
   * webhook requests are aborted and their messages handed back.
   */
  stop(deadline?: number): Promise<void>;
}

/**
 * The composition root: builds every part from the live settings, in
 * dependency order, wires them, and tears them down in reverse. It runs no
 * SQL and holds no behaviour of its own; each component brings its health
 * check, gauges and shutdown step, and each one that uses a live setting is
 * handed `settings` and follows its changes itself (the root fans nothing out).
 * Restart-only settings are read once, here, from `settings.current`.
 * @throws DatabaseUnreachableError, DataDirInUseError, or what a component's start throws (all started parts are stopped first)
 */
export async function startService(
  settings: LiveSettings,
  logger: Logger,
  options: ServiceOptions = {},
): Promise<Service> {
  const config = settings.current;
  followLogLevel(logger, settings);
  const metrics = createMetrics();
  const cleanup: ShutdownStep[] = [];
  const closeAll = (deadline = Date.now() + config.shutdownTimeoutMs) => stopInReverse(cleanup, deadline, logger);
  try {
    // First in, last out: spans of the whole shutdown are still exported, within the deadline (an unreachable
    // collector must not hold the exit; what is still buffered then is lost).
    const tracing = await createTracing(tracingOptions(config));
    cleanup.push((deadline) => withTimeout(tracing.shutdown(), Math.max(250, deadline - Date.now())));
    const database = await openDatabase(settings, logger);
    cleanup.push((deadline) => database.close(deadline));
    // Every step that needs the database retries within one start-up window (DATABASE_START_TIMEOUT_MS).
    const step = database.startUpStep;
    await step('migrate', () => migrate(database.pool, logger, { session: database.migrationSession }));
    const { pool } = database;

    const delivery = await createDelivery(settings, { pool, metrics, logger, tracing });
    cleanup.push(() => delivery.close());
    // The `send-messages` handler: a thin adapter from the engine's run context to one delivery run.
    const sendMessages: JobHandler = {
      run: ({ runId, executionId, batchSize, signal, deadline, logger: runLogger, trace }) =>
        delivery.run({ runId, executionId, batchSize, signal, deadline, logger: runLogger, trace }),
    };

    const engine = await createEngine(config, {
      pool,
      databaseUrl: database.url,
      listenUrl: database.listenUrl ?? null,
      transactionPooler: database.transactionPooler,
      connectionBounds: database.bounds,
      startUpStep: step,
      handlers: { 'send-messages': sendMessages, ...options.handlers },
      logger,
      metrics,
      live: settings,
      tracing,
    });
    cleanup.push((deadline) => engine.stop(deadline));

    const jobs = new JobService(pool, engine.handlers);
    const messages = new MessageService(pool, settings);
    const idempotency = new IdempotencyStore(pool);
    const maintenance = startMaintenance(settings, { pool, owner: config.instanceId, logger, metrics });
    cleanup.push(() => maintenance.stop());
    const health = withReplacements(
      [
        database.health,
        engine.health,
        delivery.cacheHealth,
        // main.ts replaces this with the Vault watcher's own check.
        { name: 'vault', critical: false, check: async () => 'disabled' },
        delivery.health,
      ],
      options.healthChecks,
    );
    metrics.setCollectors({
      pendingMessages: () => messages.countPending(),
      jobsByStatus: () => jobs.countByStatus(),
      jobNames: async () => (await jobs.list()).map((job) => job.name),
      deliveryPauseMs: () => delivery.pauseRemainingMs(),
      oldestDueMessageAgeSeconds: () => messages.oldestDueAgeSeconds(),
      jobSchedules: () => jobs.schedules(),
      // The readiness checks as /health-check runs them, with a shorter bound: a scrape must not wait long.
      healthChecks: () => healthStates(health, 1_000),
    });
    const { host, port, close } = await startHttpServer(settings, {
      jobs,
      messages,
      idempotency,
      health,
      metrics,
      logger,
      tracing,
    });
    cleanup.push(close);
    // The engine starts once the port is bound: a pod that cannot serve HTTP (EADDRINUSE) never takes a run.
    if (options.startEngine !== false) await engine.start();
    logger.info(
      {
        host,
        port,
        workers: config.workerCount,
        delivery: delivery.client.mode,
        signed: config.webhook.signingSecrets.length > 0,
        webhookRateLimitPerSecond: config.webhook.rateLimitPerSecond,
        database: database.embedded ? 'embedded' : 'external',
        tracing: tracing.exporting ? 'otlp' : 'off',
      },
      'job-manager is up',
    );

    return {
      port,
      metrics,
      database,
      engine,
      maintenance,
      stop: closeAll,
    };
  } catch (error) {
    await closeAll();
    throw error;
  }
}

type ShutdownStep = (deadline: number) => Promise<void>;

/** Runs the steps last first, each given `deadline` (epoch ms); a failed step is logged and the next one still runs. */
async function stopInReverse(steps: ShutdownStep[], deadline: number, logger: Logger): Promise<void> {
  for (const step of steps.reverse())
    await step(deadline).catch((error) => logger.error({ err: error }, 'shutdown step failed'));
}
