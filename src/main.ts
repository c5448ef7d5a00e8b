// Entry point of `npm start`: the pod's Node runtime (V8 flags, compile cache;
// src/lib/node-runtime.ts), then configuration (environment, then Vault),
// logger, service, live configuration from Vault, signals.
import { flushCompileCache } from 'node:module';
import type { Config, RawSettings } from './config/config.ts';
import type { LiveConfig } from './config/live-config.ts';
import type { VaultStart } from './config/vault.ts';
import {
  currentRuntime,
  execRelaunch,
  forgetRelaunchMarker,
  relaunchAfterLoad,
  relaunchBeforeLoad,
  typeStripperLoaded,
} from './lib/node-runtime.ts';
import type { Service } from './service.ts';

// 0. The runtime first, before the service's modules load: this process may be replaced (same pid) by one
// with the pod's V8 flags and the compile cache on. The modules are imported dynamically below, as a static
// import would load (and type-strip) all of them before this line runs.
const runtime = currentRuntime(process.env);
forgetRelaunchMarker(process.env);
execRelaunch(relaunchBeforeLoad(runtime));
const [
  { ConfigError },
  { LiveConfig: LiveConfigClass },
  { logRedactionPaths },
  { loadVaultSettings, startupConfig, VaultError, VaultWatcher, vaultHealthCheck },
  { DataDirInUseError },
  { DatabaseUnreachableError },
  { withTimeout },
  { closeLogger, createLogger, logFormatFor },
  { withoutCredentials },
  { startService },
] = await Promise.all([
  import('./config/config.ts'),
  import('./config/live-config.ts'),
  import('./config/settings.ts'),
  import('./config/vault.ts'),
  import('./db/data-dir-lock.ts'),
  import('./db/database.ts'),
  import('./lib/with-timeout.ts'),
  import('./observability/logger.ts'),
  import('./observability/safe-url.ts'),
  import('./service.ts'),
]);
// Some of them missed the compile cache (first start, changed sources): they are cached now; run without the stripper.
execRelaunch(relaunchAfterLoad(runtime, typeStripperLoaded()));
// `node src/main.ts --warm-compile-cache` (the container image's build runs it): every module the service may load,
// the one loaded only when tracing is exported included, is now in the compile cache; nothing is started.
if (process.argv.includes('--warm-compile-cache')) {
  await import('./observability/otel-sdk.ts');
  flushCompileCache();
  process.exit(0);
}

const exitConfig = 78; // EX_CONFIG
const exitUnavailable = 69; // EX_UNAVAILABLE
const exitTempFail = 75; // EX_TEMPFAIL: another job-manager holds DATA_DIR; retry once it has stopped
const env = process.env;

// 1. How to reach Vault (and how to log until then) comes from the environment alone.
let startup: Config;
try {
  startup = startupConfig(env);
} catch (error) {
  if (error instanceof ConfigError) {
    console.error(error.message);
    process.exit(exitConfig);
  }
  throw error;
}
const redact = logRedactionPaths();
const logFormat = logFormatFor(startup.logFormat, process.stdout.isTTY === true);
const bootLogger = createLogger({ level: startup.logLevel, instanceId: startup.instanceId, redact, format: logFormat });

// 2. Vault (when VAULT_ADDR is set), then defaults < environment < Vault, validated.
let vault: VaultStart | undefined;
let live: LiveConfig;
try {
  if (startup.vault.addr) vault = await loadVaultSettings(startup.vault, bootLogger);
  live = new LiveConfigClass(env, vault?.settings ?? {}, `Vault at ${startup.vault.secretPath}`);
} catch (error) {
  vault?.client.close();
  if (error instanceof ConfigError || error instanceof VaultError) {
    bootLogger.fatal({ reason: error.message }, `cannot start: ${error.message}`);
    process.exit(error instanceof ConfigError ? exitConfig : exitUnavailable);
  }
  throw error;
}

// What this process starts with; live settings then reach each component through `live` itself.
const config = live.current;

// 3. The service's logger (with Loki when LOKI_URL is set), the watcher, the service.
const logger = createLogger({
  level: config.logLevel,
  instanceId: config.instanceId,
  lokiUrl: config.lokiUrl,
  redact,
  format: logFormatFor(config.logFormat, process.stdout.isTTY === true),
});
if (config.lokiUrl) logger.info({ loki: withoutCredentials(config.lokiUrl) }, 'shipping logs to Loki');
const watcher = vault
  ? new VaultWatcher(vault, {
      intervalMs: startup.vault.refreshSeconds * 1_000,
      logger,
      onChange: applyVaultSettings,
    })
  : undefined;

// 4. SIGTERM/SIGINT: stop watching, stop the service, push the last log lines, exit.
// Runs in flight get SHUTDOWN_TIMEOUT_MS; then their webhook requests are
// aborted and their messages handed back. Every later step is bounded too; a
// last guard exits 1.5 s after the deadline whatever still hangs.
// The listeners go in before the service starts, so they are in place when "job-manager
// is up" is logged: whoever waits for that line may signal at once, and a signal with no
// listener kills the process outright. During start-up a signal still does just that.
let service: Service | undefined;
let stopping = false;
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (!service) {
      for (const each of ['SIGTERM', 'SIGINT'] as const) process.removeAllListeners(each);
      process.kill(process.pid, signal);
      return;
    }
    const running = service;
    if (stopping) return;
    stopping = true;
    const deadline = Date.now() + config.shutdownTimeoutMs;
    logger.info({ signal, shutdownTimeoutMs: config.shutdownTimeoutMs }, 'shutting down');
    // 1.5 s, not nearer the 2 s promise: on a busy machine this timer fires late and the process
    // still has to go; and the last log lines get 200 ms, a hung Loki must not hold the exit.
    setTimeout(() => {
      logger.error('shutdown did not finish in time; exiting anyway');
      setTimeout(() => process.exit(1), 200).unref();
      closeLogger(logger, 200).finally(() => process.exit(1));
    }, config.shutdownTimeoutMs + 1_500).unref();
    const shutdown = async () => {
      await withTimeout(watcher?.stop() ?? Promise.resolve(), 1_000).catch(() => {});
      await running.stop(deadline);
      logger.info('stopped');
    };
    shutdown().then(
      async () => {
        await closeLogger(logger, 1_000);
        process.exit(0);
      },
      async (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        await closeLogger(logger, 1_000);
        process.exit(1);
      },
    );
  });
}

service = await startService(live, logger, { healthChecks: [vaultHealthCheck(watcher)] }).catch(
  async (error: unknown) => {
    let exitCode = 1;
    if (error instanceof DatabaseUnreachableError) {
      // The reason is the driver's message (host and port, no URL); the stack adds nothing.
      logger.fatal({ database: error.host, reason: error.message }, `cannot start: ${error.message}`);
      exitCode = exitUnavailable;
    } else if (error instanceof DataDirInUseError) {
      logger.fatal({ dataDir: error.dataDir, ownerPid: error.ownerPid }, `cannot start: ${error.message}`);
      exitCode = exitTempFail;
    } else {
      logger.fatal({ err: error }, 'start-up failed');
    }
    await watcher?.stop();
    await closeLogger(logger);
    process.exit(exitCode);
  },
);
watcher?.start(service.metrics.vaultRefreshFailures);
if (watcher) logger.info({ everySeconds: startup.vault.refreshSeconds }, 'watching Vault for configuration changes');

/**
 * A changed Vault secret: validated as the whole configuration that will run
 * (every component's guard included) before any component's listener runs,
 * then applied; a ConfigError keeps the running one.
 */
async function applyVaultSettings(settings: RawSettings): Promise<void> {
  const change = await live.update(settings);
  logger.info(
    {
      applied: change.applied,
      workers: change.config.workerCount,
      fetchIntervalMs: change.config.fetchIntervalMs,
      logLevel: change.config.logLevel,
    },
    'configuration from Vault applied',
  );
  if (change.needsRestart.length > 0) {
    logger.warn(
      { settings: change.needsRestart },
      `needs restart: ${change.needsRestart.join(', ')} changed but only apply at start`,
    );
  }
}
