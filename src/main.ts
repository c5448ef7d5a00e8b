// Entry point of `npm start`: configuration, logger, service, signals.
import { ConfigError, resolveConfig } from './config/config.ts';
import { createLogger } from './observability/logger.ts';
import { startService } from './service.ts';

let config: ReturnType<typeof resolveConfig>;
try {
  config = resolveConfig(process.env);
} catch (error) {
  if (error instanceof ConfigError) {
    console.error(error.message);
    process.exit(78); // EX_CONFIG
  }
  throw error;
}

const logger = createLogger({ level: config.logLevel, instanceId: config.instanceId, lokiUrl: config.lokiUrl });
const service = await startService(config, logger).catch((error: unknown) => {
  logger.fatal({ err: error }, 'start-up failed');
  process.exit(1);
});

let stopping = false;
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    service.stop().then(
      () => {
        logger.info('stopped');
        logger.flush(() => process.exit(0));
      },
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  });
}
