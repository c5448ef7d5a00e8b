import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { PgBoss } from 'pg-boss';
import { otherLiveOwner } from '../db/data-dir-lock.ts';
import { type EmbeddedDatabase, findFreePort, readPostmasterPid, startEmbeddedDatabase } from '../db/embedded.ts';
import type { Logger } from '../observability/logger.ts';
import { withoutCredentials } from '../observability/safe-url.ts';

/**
 * `npm run dashboard`: the pg-boss dashboard (npm `@pg-boss/dashboard`) on the
 * service's own database, found the way the service finds it: DATABASE_URL,
 * else the embedded PostgreSQL in DATA_DIR.
 *
 * The embedded server listens on a new free port each time the service
 * starts, so the dashboard does not get that port: it connects to a small TCP
 * relay on 127.0.0.1 that looks up the current port in the cluster's
 * postmaster.pid for every new connection. The dashboard keeps working across
 * service restarts. With no server running, the tool starts the embedded
 * server itself (a service started later takes it over, and the relay
 * follows); never while a service owns the folder (db/data-dir-lock.ts).
 *
 * The dashboard's own pg-boss must read the same pg-boss schema version the
 * service's pg-boss writes; package.json pins both (see docs/operations.md, the pg-boss dashboard).
 */

export const pgBossSchema = 'pgboss';

export interface DashboardOptions {
  /** Unset: the embedded database in dataDir. */
  databaseUrl: string | undefined;
  dataDir: string;
  host: string;
  /** Preferred port; when taken, a free one is used. 0: any free port. */
  port: number;
  username: string;
  /** Unset: a random one for this run. */
  password: string | undefined;
  logger: Logger;
}

export interface RunningDashboard {
  /** Where a browser on this machine opens it (no credentials in it). */
  url: string;
  username: string;
  password: string;
  /** `embedded (<dir>)` or the database URL without its password. */
  database: string;
  /** Problems found with the database that the dashboard will show (no pg-boss schema yet, schema mismatch). */
  warnings: string[];
  stop(): Promise<void>;
}

const require = createRequire(import.meta.url);
const dashboardCli = join(dirname(require.resolve('@pg-boss/dashboard/package.json')), 'bin', 'cli.js');
/** The pg-boss schema version the service's pg-boss (and, by the pin, the dashboard's) reads and writes. */
export const expectedSchemaVersion: number = require('pg-boss/package.json').pgboss.schema;

/**
 * Starts the dashboard and resolves once it answers HTTP.
 * @throws Error when the embedded database has never been created, or the dashboard does not come up within 60 s
 */
export async function startDashboard(options: DashboardOptions): Promise<RunningDashboard> {
  const cleanup: Array<() => Promise<void>> = [];
  const stop = async () => {
    for (const step of cleanup.reverse()) await step().catch(() => {});
  };
  try {
    let databaseUrl: string;
    let database: string;
    if (options.databaseUrl) {
      databaseUrl = options.databaseUrl;
      database = withoutCredentials(options.databaseUrl);
    } else {
      const relay = await relayToEmbedded(options.dataDir, options.logger);
      cleanup.push(() => relay.close());
      databaseUrl = relay.url;
      database = `embedded (${resolve(options.dataDir)})`;
    }
    const warnings = await checkPgBossSchema(databaseUrl);

    const password = options.password ?? randomBytes(12).toString('base64url');
    const port = await portOrFree(options.host, options.port);
    const child = spawn(process.execPath, [dashboardCli], {
      env: {
        NODE_ENV: 'production',
        DATABASE_URL: databaseUrl,
        PGBOSS_SCHEMA: pgBossSchema,
        HOST: options.host,
        PORT: String(port),
        PGBOSS_DASHBOARD_AUTH_USERNAME: options.username,
        PGBOSS_DASHBOARD_AUTH_PASSWORD: password,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    cleanup.push(() => stopChild(child));
    const output: string[] = [];
    for (const stream of [child.stdout, child.stderr]) {
      stream?.setEncoding('utf8').on('data', (chunk: string) => {
        output.push(chunk);
        if (output.length > 50) output.shift();
      });
    }
    const url = `http://${browsableHost(options.host)}:${port}/`;
    await waitUntilServing(url, child, output);
    return { url, username: options.username, password, database, warnings, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** A failed start-up check of the pg-boss schema, in words for the operator; empty when the dashboard can read it. */
async function checkPgBossSchema(databaseUrl: string): Promise<string[]> {
  const boss = new PgBoss({
    connectionString: databaseUrl,
    schema: pgBossSchema,
    migrate: false,
    createSchema: false,
    supervise: false,
    schedule: false,
    max: 1,
  });
  boss.on('error', () => {});
  try {
    await boss.start();
    return [];
  } catch (error) {
    const message = (error as Error).message;
    if (/not installed/.test(message)) {
      return [
        `no pg-boss schema "${pgBossSchema}" in this database yet: start the service once (npm start) to create it`,
      ];
    }
    if (/requires migrations/.test(message)) {
      return [
        `the database's pg-boss schema is not version ${expectedSchemaVersion}, the one this dashboard reads: ` +
          'job pages will fail. Run the service and the dashboard from the same checkout (package.json pins both).',
      ];
    }
    return [`could not check the pg-boss schema: ${message}`];
  } finally {
    await boss.stop({ graceful: false, close: true }).catch(() => {});
  }
}

interface Relay {
  url: string;
  close(): Promise<void>;
}

/**
 * A TCP relay on 127.0.0.1 to whichever embedded server owns dataDir now.
 * @throws Error when dataDir holds no embedded cluster (the service has never run there)
 */
async function relayToEmbedded(dataDir: string, logger: Logger): Promise<Relay> {
  const root = resolve(dataDir);
  const clusterDir = join(root, 'pg');
  const passwordFile = join(root, 'pg-password');
  if (!existsSync(join(clusterDir, 'PG_VERSION')) || !existsSync(passwordFile)) {
    throw new Error(
      `no embedded database in ${root}: start the service once (npm start), or set DATABASE_URL (and DATA_DIR if it uses another folder)`,
    );
  }
  const password = (await readFile(passwordFile, 'utf8')).trim();

  // Our own server, only when none runs and no service owns the folder; a
  // service starting later stops it and starts its own. A service that owns
  // the folder but has no server up yet (it is starting) is waited for.
  let own: { server: EmbeddedDatabase; pid: number | undefined } | undefined;
  let starting: Promise<number> | undefined;
  const currentPort = async (): Promise<number> => {
    const running = await readPostmasterPid(clusterDir);
    if (running) return running.port;
    const service = await otherLiveOwner(root);
    if (service) return waitForServiceDatabase(clusterDir, service.pid);
    starting ??= (async () => {
      logger.info({ dataDir: clusterDir }, 'the embedded PostgreSQL is not running; starting it for the dashboard');
      const server = await startEmbeddedDatabase(dataDir, logger, { owner: 'tool' });
      own = { server, pid: (await readPostmasterPid(clusterDir))?.pid };
      return Number(new URL(server.url).port);
    })().finally(() => {
      starting = undefined;
    });
    return starting;
  };
  await currentPort();

  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.pause();
    currentPort().then(
      (port) => {
        const upstream = connect({ host: '127.0.0.1', port });
        sockets.add(upstream);
        upstream.on('close', () => sockets.delete(upstream));
        upstream.on('error', () => client.destroy());
        client.on('error', () => upstream.destroy());
        client.pipe(upstream).pipe(client);
        client.resume();
      },
      (error: unknown) => {
        logger.error({ err: error }, 'no embedded PostgreSQL to relay to');
        client.destroy();
      },
    );
  });
  const port = await new Promise<number>((resolvePort, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolvePort((server.address() as { port: number }).port));
  });
  return {
    url: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
    async close() {
      await new Promise<void>((done) => {
        server.close(() => done());
        for (const socket of sockets) socket.destroy();
      });
      // Stop the server we started, unless a service has taken the data directory over since.
      if (own && own.pid !== undefined && (await readPostmasterPid(clusterDir))?.pid === own.pid) {
        await own.server.stop();
      }
    },
  };
}

/**
 * The port of the server a starting service (pid `servicePid`) brings up in clusterDir.
 * @throws Error when none is up within 30 s
 */
async function waitForServiceDatabase(clusterDir: string, servicePid: number): Promise<number> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const running = await readPostmasterPid(clusterDir);
    if (running) return running.port;
    await new Promise((done) => setTimeout(done, 200));
  }
  throw new Error(
    `job-manager (pid ${servicePid}) owns ${dirname(clusterDir)} but its PostgreSQL has not come up within 30 s; is it starting or stuck?`,
  );
}

async function portOrFree(host: string, preferred: number): Promise<number> {
  if (preferred === 0) return findFreePort();
  const free = await new Promise<boolean>((answer) => {
    const probe = createServer();
    probe.once('error', () => answer(false));
    probe.listen(preferred, host, () => probe.close(() => answer(true)));
  });
  return free ? preferred : findFreePort();
}

async function waitUntilServing(url: string, child: ChildProcess, output: string[]): Promise<void> {
  const deadline = Date.now() + 60_000;
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  while (Date.now() < deadline) {
    if (exited) throw new Error(`the pg-boss dashboard exited at start:\n${output.join('').trim()}`);
    // Any HTTP answer (401 without credentials) means it is serving.
    const answered = await fetch(url, { signal: AbortSignal.timeout(2_000) }).then(
      () => true,
      () => false,
    );
    if (answered) return;
    await new Promise((done) => setTimeout(done, 200));
  }
  throw new Error(`the pg-boss dashboard did not answer at ${url} within 60 s:\n${output.join('').trim()}`);
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((done) => {
    const force = setTimeout(() => child.kill('SIGKILL'), 5_000);
    child.once('exit', () => {
      clearTimeout(force);
      done();
    });
    child.kill('SIGTERM');
  });
}

/** 0.0.0.0 and :: listen everywhere; a browser on this machine uses 127.0.0.1. */
function browsableHost(host: string): string {
  if (host === '0.0.0.0' || host === '::' || host === '') return '127.0.0.1';
  return host.includes(':') ? `[${host}]` : host;
}
