// One service process for multi-process tests: the real service plus the
// test-only "record-run" handler. Settings come from the environment like
// `npm start`; prints "ready <port>" when it serves.
import { LiveConfig } from '../../src/config/live-config.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { startService } from '../../src/service.ts';
import { recordingHandler } from './recording-handler.ts';

const live = new LiveConfig(process.env);
const config = live.current;
const logger = createLogger({ level: config.logLevel, instanceId: config.instanceId });
const service = await startService(live, logger, {
  handlers: { 'record-run': recordingHandler(config.databaseUrl!, config.instanceId) },
});
// SIGTERM is ours before "ready" goes out: a test may signal as soon as it reads it.
process.on('SIGTERM', () => {
  service.stop().then(
    () => process.exit(0),
    () => process.exit(1),
  );
});
process.stdout.write(`ready ${service.port}\n`);
