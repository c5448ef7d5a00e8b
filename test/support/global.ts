// Mocha global fixture (.mocharc.json "require"): one PostgreSQL per test run.
import { stopTestServer } from './postgres.ts';

export async function mochaGlobalTeardown(): Promise<void> {
  await stopTestServer();
}
