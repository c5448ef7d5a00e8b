// Starts an embedded PostgreSQL in the folder given as argument and waits to be killed.
import { startEmbeddedDatabase } from '../../src/db/embedded.ts';
import { silentLogger } from '../../src/observability/logger.ts';

await startEmbeddedDatabase(process.argv[2]!, silentLogger());
process.stdout.write('ready\n');
setInterval(() => {}, 1_000);
