import { chmodSync, chownSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { findFreePort } from '../../../src/db/embedded.ts';
import { launch, type TestProcess } from '../../support/processes.ts';
import { postgresUser } from './cluster.ts';

/** Debian's `pgbouncer` package puts the binary here. */
export const pgbouncerBinary = '/usr/sbin/pgbouncer';

/**
 * A real PgBouncer in front of a PostgreSQL on `serverPort`: every database
 * name is passed through (`* = host=127.0.0.1 port=…`), `pool_mode =
 * transaction`, and every other setting at its default (no
 * `ignore_startup_parameters`, default_pool_size 20, max_client_conn 100).
 * Trust authentication with an auth_file naming the `postgres` user (PgBouncer
 * needs the user listed even for trust). As root it runs as `postgres` (`-u`),
 * as PgBouncer refuses to run as root.
 */
export class PgBouncer {
  readonly port: number;
  readonly #dir: string;
  readonly #process: TestProcess;

  private constructor(port: number, dir: string, process: TestProcess) {
    this.port = port;
    this.#dir = dir;
    this.#process = process;
  }

  static available(): boolean {
    return existsSync(pgbouncerBinary);
  }

  static async start(serverPort: number): Promise<PgBouncer> {
    const dir = mkdtempSync(join(tmpdir(), 'jm-pgbouncer-'));
    const port = await findFreePort();
    writeFileSync(join(dir, 'users.txt'), '"postgres" ""\n');
    writeFileSync(
      join(dir, 'pgbouncer.ini'),
      [
        '[databases]',
        `* = host=127.0.0.1 port=${serverPort}`,
        '[pgbouncer]',
        'listen_addr = 127.0.0.1',
        `listen_port = ${port}`,
        'unix_socket_dir =',
        'auth_type = trust',
        `auth_file = ${join(dir, 'users.txt')}`,
        'pool_mode = transaction',
        '',
      ].join('\n'),
    );
    const asRoot = process.getuid?.() === 0;
    if (asRoot) {
      const user = postgresUser();
      chmodSync(dir, 0o755);
      for (const file of ['', 'users.txt', 'pgbouncer.ini']) chownSync(join(dir, file), user.uid, user.gid);
    }
    const bouncer = launch(pgbouncerBinary, {
      name: 'pgbouncer',
      args: [...(asRoot ? ['-u', 'postgres'] : []), join(dir, 'pgbouncer.ini')],
    });
    const started = new PgBouncer(port, dir, bouncer);
    const deadline = Date.now() + 15_000;
    while (!(await started.#accepts())) {
      if (!bouncer.alive || Date.now() > deadline) {
        await started.stop();
        throw new Error(`pgbouncer did not start:\n${bouncer.output()}`);
      }
      await sleep(100);
    }
    return started;
  }

  url(database: string): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${database}`;
  }

  /** PgBouncer's own log (its stderr). */
  log(): string {
    return this.#process.output();
  }

  async stop(): Promise<void> {
    await this.#process.stop('SIGINT', 5_000);
    rmSync(this.#dir, { recursive: true, force: true });
  }

  async #accepts(): Promise<boolean> {
    const client = new pg.Client({ connectionString: this.url('postgres'), connectionTimeoutMillis: 2_000 });
    client.on('error', () => {});
    try {
      await client.connect();
      await client.query('SELECT 1');
      return true;
    } catch {
      return false;
    } finally {
      await client.end().catch(() => {});
    }
  }
}
