// Mocha global fixtures (.mocharc.json "require"), run once in mocha's main
// process, also with --parallel: one PostgreSQL and one migrated template per run.
import { startTestRun, stopTestServer } from './postgres.ts';

export async function mochaGlobalSetup(): Promise<void> {
  await startTestRun();
}

export async function mochaGlobalTeardown(): Promise<void> {
  await stopTestServer();
}
