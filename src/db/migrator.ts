import { createHash, randomUUID } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { retryUntilDone } from '../lib/retry.ts';
import type { Logger } from '../observability/logger.ts';
import type { Pool, PoolClient } from './pool.ts';
import { withTransaction } from './transaction.ts';

/**
 * Applies db/migrations/*.sql in file-name order, each file once, each in its
 * own transaction (dbmate's format and semantics, which sqlc also reads as
 * schema): a file holds one `-- migrate:up` section; anything after
 * `-- migrate:down` is ignored.
 *
 * A file whose first line is `-- migrate:up transaction:false` runs outside a
 * transaction, for the statements PostgreSQL refuses inside one (CREATE INDEX
 * CONCURRENTLY). It holds exactly one statement, sent as one query on a
 * session of its own with statement_timeout and lock_timeout off (a
 * multi-statement query would be an implicit transaction block, and a
 * lock_timeout cancels a CONCURRENTLY build whenever any transaction in the
 * database is older than it, leaving an INVALID index).
 *
 * Pods starting together take turns without a session lock (so it works
 * through PgBouncer in transaction pooling mode): every step is a short
 * transaction under `pg_advisory_xact_lock`, and a transaction:false file is
 * claimed with a lease row (schema_migrations_lease) renewed while it runs,
 * not with a transaction held open, which the CONCURRENTLY build would wait
 * for. Other pods poll until it is recorded; a lease not renewed for
 * `leaseMs` (its pod died) is taken over. An INVALID index left by an
 * interrupted build is dropped and built again.
 */
export const migrationsDir = new URL('../../db/migrations/', import.meta.url).pathname;

/** The client-side reply timeout for one migration file (ms). */
const migrationTimeoutMs = 3_600_000;

// Any fixed 64-bit number; it names "job-manager migrations" among advisory locks.
const migrationLockKey = 7_364_291_004_118_201;

/**
 * lock_timeout for a transactional file that sets none of its own (the lint
 * requires every new file to set it first; this is the floor for one that
 * slipped through).
 */
const defaultLockTimeout = '5s';

export interface Migration {
  version: string;
  name: string;
  sql: string;
  checksum: string;
  /** false: `-- migrate:up transaction:false`, run outside a transaction. */
  transactional: boolean;
}

export interface MigrationReport {
  applied: string[];
  /** Applied earlier, but the file changed since: reported, never re-run. */
  changed: string[];
}

/** A connection that is one database session, for transaction:false files. */
export interface MigrationSession {
  query: PoolClient['query'];
  /** Gives the session back (or closes it); `error` set when it failed. */
  release(error?: Error): void;
}

export interface MigrateOptions {
  /** The migrations folder. Default: db/migrations. */
  dir?: string;
  /**
   * Opens the session a transaction:false file runs on. Default: a connection
   * from `pool`. Behind PgBouncer in transaction mode pass a direct connection
   * (DATABASE_DIRECT_URL): there the pool's "session" changes server between
   * statements, so the file runs with the server's default timeouts.
   */
  session?: () => Promise<MigrationSession>;
  /** How long a transaction:false file's lease lasts without renewal (ms). Default 30000. */
  leaseMs?: number;
  /** How often a pod waiting for another's transaction:false file looks again (ms). Default 500. */
  pollMs?: number;
  /** A file failing on lock_timeout is retried, with backoff from 1 s to 10 s, for this long (ms). Default 60000. */
  lockRetryMs?: number;
}

/** Reads every *.sql file of `dir`, in file-name order. @throws when a file has no up section */
export async function readMigrations(dir: string = migrationsDir): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((file) => file.endsWith('.sql')).sort();
  return Promise.all(
    files.map(async (file) => {
      const text = await readFile(join(dir, file), 'utf8');
      const version = file.split('_')[0] ?? file;
      const { sql, transactional } = parseUp(text, file);
      return { version, name: file, sql, checksum: sha256(text), transactional };
    }),
  );
}

/** The up section's SQL, without the `-- migrate:up` line. @throws when there is none */
export function upSection(text: string, file: string): string {
  return parseUp(text, file).sql;
}

function parseUp(text: string, file: string): { sql: string; transactional: boolean } {
  const header = /^-- migrate:up\b(.*)$/m.exec(text);
  if (!header) throw new Error(`migration ${file} has no "-- migrate:up" section`);
  const transactional = !/\btransaction:false\b/.test(header[1] ?? '');
  const start = header.index + header[0].length;
  const down = text.indexOf('-- migrate:down', start);
  return { sql: text.slice(start, down === -1 ? undefined : down).trim(), transactional };
}

/**
 * Applies every migration of `options.dir` not yet in schema_migrations.
 * @returns the files applied by this call and the applied files changed since
 * @throws Error "migration <file> failed: <reason>" (earlier files stay applied)
 */
export async function migrate(pool: Pool, logger: Logger, options: MigrateOptions = {}): Promise<MigrationReport> {
  const migrations = await readMigrations(options.dir);
  const run = new MigrationRun(pool, logger, options);
  await run.step(createTables);
  const applied: string[] = [];
  for (;;) {
    const next = await run.step(async (client, known) => {
      const pending = migrations.find((migration) => !known.has(migration.version));
      if (!pending) return { done: true as const, changed: changedFiles(migrations, known) };
      if (!pending.transactional) return { done: false as const, pending, claimed: await run.claim(client, pending) };
      await run.applyInTransaction(client, pending);
      return { done: false as const, pending, claimed: true };
    });
    if (next.done) {
      for (const name of next.changed) {
        logger.warn(
          { migration: name },
          'migration file changed after it was applied; it is NOT re-run. Add a new migration instead',
        );
      }
      if (applied.length > 0) logger.info({ applied }, 'migrations applied');
      return { applied, changed: next.changed };
    }
    if (next.pending.transactional) applied.push(next.pending.name);
    else if (!next.claimed) await run.waitForOther(next.pending);
    else if (await run.applyOutsideTransaction(next.pending)) applied.push(next.pending.name);
  }
}

async function createTables(client: PoolClient): Promise<void> {
  await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
  )`);
  await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations_lease (
    version    text PRIMARY KEY,
    holder     text NOT NULL,
    expires_at timestamptz NOT NULL
  )`);
}

function changedFiles(migrations: Migration[], known: Map<string, string>): string[] {
  return migrations
    .filter((migration) => known.has(migration.version) && known.get(migration.version) !== migration.checksum)
    .map((migration) => migration.name);
}

/** One call of migrate(): its identity as a lease holder and its settings. */
class MigrationRun {
  readonly holder = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  private readonly leaseMs: number;
  private readonly pollMs: number;
  private readonly lockRetryMs: number;
  private waitingFor: string | undefined;
  private readonly pool: Pool;
  private readonly logger: Logger;
  private readonly options: MigrateOptions;

  constructor(pool: Pool, logger: Logger, options: MigrateOptions) {
    this.pool = pool;
    this.logger = logger;
    this.options = options;
    this.leaseMs = options.leaseMs ?? 30_000;
    this.pollMs = options.pollMs ?? 500;
    this.lockRetryMs = options.lockRetryMs ?? 60_000;
  }

  /**
   * One short transaction under the migration lock, given the applied
   * versions and their checksums. A transactional file failing on
   * lock_timeout (55P03) rolls back and is retried with backoff.
   */
  step<T>(work: (client: PoolClient, known: Map<string, string>) => Promise<T>): Promise<T> {
    const once = () =>
      withTransaction(this.pool, async (client) => {
        // A migration may take longer than the service's statement timeout.
        await client.query('SET LOCAL statement_timeout = 0');
        // Waits as long as another pod's migration takes; lock_timeout applies from here on.
        await client.query('SELECT pg_advisory_xact_lock($1)', [migrationLockKey]);
        await client.query(`SET LOCAL lock_timeout = '${defaultLockTimeout}'`);
        const exists = await client.query("SELECT to_regclass('schema_migrations') IS NOT NULL AS exists");
        const known = new Map<string, string>();
        if (exists.rows[0].exists) {
          const { rows } = await client.query<{ version: string; checksum: string }>(
            'SELECT version, checksum FROM schema_migrations',
          );
          for (const row of rows) known.set(row.version, row.checksum);
        }
        return work(client, known);
      });
    return retryUntilDone(once, {
      firstDelayMs: 1_000,
      maxDelayMs: 10_000,
      giveUpAfterMs: this.lockRetryMs,
      retryIf: (error) => lockTimedOut(error),
      onRetry: (error, attempt, delayMs) =>
        this.logger.warn(
          { attempt, retryInMs: delayMs, reason: (error as Error).message },
          'a migration timed out waiting for a lock (lock_timeout); it was rolled back and is retried',
        ),
    });
  }

  async applyInTransaction(client: PoolClient, migration: Migration): Promise<void> {
    try {
      // node-postgres reads a per-query reply timeout too (not in its types): a long migration is not cut off.
      await client.query({ text: migration.sql, query_timeout: migrationTimeoutMs } as { text: string });
      // The file's own `SET lock_timeout` would outlive the transaction on this pooled connection.
      await client.query('RESET lock_timeout');
    } catch (error) {
      // The code stays on the error so that step() retries a lock_timeout.
      throw Object.assign(
        new Error(`migration ${migration.name} failed: ${(error as Error).message}`, { cause: error }),
        {
          code: (error as { code?: string }).code,
        },
      );
    }
    await record(client, migration);
  }

  /** Takes the lease on a transaction:false file, or not when another live pod holds it. */
  async claim(client: PoolClient, migration: Migration): Promise<boolean> {
    const previous = await client.query<{ holder: string }>(
      'SELECT holder FROM schema_migrations_lease WHERE version = $1 AND expires_at < now()',
      [migration.version],
    );
    const { rowCount } = await client.query(
      `INSERT INTO schema_migrations_lease (version, holder, expires_at)
       VALUES ($1, $2, now() + make_interval(secs => $3 / 1000.0))
       ON CONFLICT (version) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
       WHERE schema_migrations_lease.expires_at < now()`,
      [migration.version, this.holder, this.leaseMs],
    );
    if (rowCount === 1 && previous.rows[0]) {
      this.logger.warn(
        { migration: migration.name, previousHolder: previous.rows[0].holder },
        'taking over a migration whose pod stopped renewing its lease',
      );
    }
    return rowCount === 1;
  }

  async waitForOther(migration: Migration): Promise<void> {
    if (this.waitingFor !== migration.name) {
      this.waitingFor = migration.name;
      this.logger.info({ migration: migration.name }, 'another instance is applying this migration; waiting for it');
    }
    await sleep(this.pollMs);
  }

  /**
   * Runs a transaction:false file under its lease: drops an INVALID index an
   * interrupted build of it left, runs the statement, records it.
   * @returns false when another pod recorded it first (this one lost its lease)
   */
  async applyOutsideTransaction(migration: Migration): Promise<boolean> {
    const renewal = setInterval(() => {
      this.pool
        .query(
          `UPDATE schema_migrations_lease SET expires_at = now() + make_interval(secs => $3 / 1000.0)
           WHERE version = $1 AND holder = $2`,
          [migration.version, this.holder, this.leaseMs],
        )
        .catch(() => {}); // the next renewal tries again; a lease lost is taken over and healed
    }, this.leaseMs / 3);
    try {
      await this.runOnSession(migration);
    } catch (error) {
      await this.pool.query('DELETE FROM schema_migrations_lease WHERE version = $1 AND holder = $2', [
        migration.version,
        this.holder,
      ]);
      throw new Error(`migration ${migration.name} failed: ${(error as Error).message}`, { cause: error });
    } finally {
      clearInterval(renewal);
    }
    return this.step(async (client) => {
      await client.query('DELETE FROM schema_migrations_lease WHERE version = $1 AND holder = $2', [
        migration.version,
        this.holder,
      ]);
      return record(client, migration);
    });
  }

  private async runOnSession(migration: Migration): Promise<void> {
    const session = await (this.options.session ?? (() => this.pool.connect()))();
    let failure: Error | undefined;
    try {
      await session.query('SET statement_timeout = 0');
      await session.query('SET lock_timeout = 0');
      const index = concurrentIndexName(migration.sql);
      if (index && (await invalidIndex(session, index))) {
        this.logger.warn(
          { migration: migration.name, index },
          'dropping the INVALID index an interrupted CONCURRENTLY build left, to build it again',
        );
        await session.query({
          text: `DROP INDEX CONCURRENTLY IF EXISTS ${index}`,
          query_timeout: migrationTimeoutMs,
        } as {
          text: string;
        });
      }
      await session.query({ text: migration.sql, query_timeout: migrationTimeoutMs } as { text: string });
      await session.query('RESET statement_timeout');
      await session.query('RESET lock_timeout');
    } catch (error) {
      failure = error as Error;
      throw error;
    } finally {
      // A failed session may still carry the settings above: it is closed, not reused.
      session.release(failure);
    }
  }
}

/** The index a `CREATE [UNIQUE] INDEX CONCURRENTLY [IF NOT EXISTS] name` statement builds, as written. */
export function concurrentIndexName(sql: string): string | undefined {
  const match =
    /^\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+(?:IF\s+NOT\s+EXISTS\s+)?((?:"[^"]+"|[\w$]+)(?:\.(?:"[^"]+"|[\w$]+))?)\s+ON\b/i.exec(
      withoutComments(sql),
    );
  return match?.[1];
}

function withoutComments(sql: string): string {
  return sql.replace(/--[^\n]*\n?/g, '\n').replace(/\/\*[\s\S]*?\*\//g, ' ');
}

async function invalidIndex(session: MigrationSession, index: string): Promise<boolean> {
  const { rows } = await session.query<{ valid: boolean }>(
    'SELECT indisvalid AS valid FROM pg_index WHERE indexrelid = to_regclass($1)',
    [index],
  );
  return rows[0]?.valid === false;
}

async function record(client: PoolClient, migration: Migration): Promise<boolean> {
  const { rowCount } = await client.query(
    'INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3) ON CONFLICT (version) DO NOTHING',
    [migration.version, migration.name, migration.checksum],
  );
  return rowCount === 1;
}

function lockTimedOut(error: unknown): boolean {
  return (error as { code?: string } | undefined)?.code === '55P03';
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
