// Entry point of `npm run dashboard`: the pg-boss dashboard on the service's own
// database (DATABASE_URL, else the embedded one in DATA_DIR; Vault too when
// VAULT_ADDR is set, as for the service). Prints its URL and credentials.
//
// Own settings (this tool only, not the service's):
//   DASHBOARD_HOST  listen address (default 127.0.0.1; compose uses 0.0.0.0)
//   DASHBOARD_PORT  preferred port (default 3001; a free one when taken; 0: any)
//   PGBOSS_DASHBOARD_AUTH_USERNAME / PGBOSS_DASHBOARD_AUTH_PASSWORD
//                   basic-auth credentials (default admin / a random password per run)
import pino from 'pino';
import { type Config, ConfigError } from '../config/config.ts';
import { loadVaultSettings, resolveConfigWithVault, startupConfig, VaultError } from '../config/vault.ts';
import { createLogger, logFormatFor } from '../observability/logger.ts';
import { startDashboard } from './pgboss-dashboard.ts';

const env = process.env;
const exitConfig = 78;

let config: Config;
let logger: ReturnType<typeof createLogger>;
try {
  const startup = startupConfig(env);
  // Logs go to stderr: stdout carries only the URL and credentials.
  logger = createLogger({
    level: startup.logLevel,
    instanceId: 'pgboss-dashboard',
    format: logFormatFor(startup.logFormat, process.stderr.isTTY === true),
    destination: pino.destination({ dest: 2, sync: true }),
  });
  const vault = startup.vault.addr ? await loadVaultSettings(startup.vault, logger) : undefined;
  vault?.client.close();
  config = resolveConfigWithVault(env, vault?.settings ?? {}, startup.vault.secretPath);
} catch (error) {
  if (error instanceof ConfigError || error instanceof VaultError) {
    console.error(error.message);
    process.exit(exitConfig);
  }
  throw error;
}

const port = Number(env.DASHBOARD_PORT ?? 3001);
if (!Number.isInteger(port) || port < 0 || port > 65_535) {
  console.error(
    `Invalid configuration: DASHBOARD_PORT must be a port number (got ${JSON.stringify(env.DASHBOARD_PORT)})`,
  );
  process.exit(exitConfig);
}

let dashboard: Awaited<ReturnType<typeof startDashboard>>;
try {
  dashboard = await startDashboard({
    databaseUrl: config.databaseUrl,
    dataDir: config.dataDir,
    host: env.DASHBOARD_HOST || '127.0.0.1',
    port,
    username: env.PGBOSS_DASHBOARD_AUTH_USERNAME || 'admin',
    password: env.PGBOSS_DASHBOARD_AUTH_PASSWORD || undefined,
    logger,
  });
} catch (error) {
  console.error(`npm run dashboard: ${(error as Error).message}`);
  process.exit(1);
}

// Signals are ours before the banner goes out: whoever reads the URL may press Ctrl-C (or send
// SIGTERM) at once, and until a listener exists a signal kills the process outright.
let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    dashboard.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
}

const withCredentials = new URL(dashboard.url);
withCredentials.username = encodeURIComponent(dashboard.username);
withCredentials.password = encodeURIComponent(dashboard.password);
process.stdout.write(
  [
    '',
    `pg-boss dashboard for job-manager (queue "job-runs", schema "pgboss") on ${dashboard.database}`,
    `  URL:      ${dashboard.url}`,
    `  user:     ${dashboard.username}`,
    `  password: ${dashboard.password}`,
    `  (or open ${withCredentials.toString()})`,
    ...dashboard.warnings.map((warning) => `  warning:  ${warning}`),
    '  Ctrl-C stops it.',
    '',
  ].join('\n'),
);
