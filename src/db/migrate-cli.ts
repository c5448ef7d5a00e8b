// `npm run db:migrate`: applies the migrations and exits.
import { resolveConfig } from '../config/config.ts';
import { createLogger, logFormatFor } from '../observability/logger.ts';
import { openDatabase } from './database.ts';
import { migrate } from './migrator.ts';

const config = resolveConfig(process.env);
const logger = createLogger({
  level: config.logLevel,
  instanceId: config.instanceId,
  format: logFormatFor(config.logFormat, process.stdout.isTTY === true),
});
const database = await openDatabase(config, logger);
try {
  const report = await migrate(database.pool, logger);
  logger.info({ applied: report.applied.length, changed: report.changed }, 'database is up to date');
} finally {
  await database.close();
}
