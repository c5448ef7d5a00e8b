// `npm run db:migrate`: applies the migrations and exits.
import { LiveConfig } from '../config/live-config.ts';
import { createLogger, logFormatFor } from '../observability/logger.ts';
import { DataDirInUseError } from './data-dir-lock.ts';
import { type Database, openDatabase } from './database.ts';
import { migrate } from './migrator.ts';

const settings = new LiveConfig(process.env);
const config = settings.current;
const logger = createLogger({
  level: config.logLevel,
  instanceId: config.instanceId,
  format: logFormatFor(config.logFormat, process.stdout.isTTY === true),
});
let database: Database;
try {
  database = await openDatabase(settings, logger);
} catch (error) {
  // The running service has migrated its embedded database at its own start.
  if (!(error instanceof DataDirInUseError)) throw error;
  logger.fatal(`cannot migrate: ${error.message}`);
  process.exit(75); // EX_TEMPFAIL, as `npm start`
}
try {
  const report = await migrate(database.pool, logger);
  logger.info({ applied: report.applied.length, changed: report.changed }, 'database is up to date');
} finally {
  await database.close();
}
