import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../observability/logger.ts';
import type { Pool } from './pool.ts';
import { withTransaction } from './transaction.ts';

/**
 * Applies db/migrations/*.sql in file-name order. A file holds one
 * `-- migrate:up` section (dbmate's format, which sqlc also reads as schema);
 * anything after `-- migrate:down` is ignored. All pending files apply in one
 * transaction under an advisory lock, so pods starting together take turns
 * and a failed migration leaves nothing half-done.
 */
export const migrationsDir = new URL('../../db/migrations/', import.meta.url).pathname;

/** The client-side reply timeout for one migration file (ms). */
const migrationTimeoutMs = 3_600_000;

// Any fixed 64-bit number; it names "job-manager migrations" among advisory locks.
const migrationLockKey = 7_364_291_004_118_201;

export interface Migration {
  version: string;
  name: string;
  sql: string;
  checksum: string;
}

export interface MigrationReport {
  applied: string[];
  /** Applied earlier, but the file changed since: reported, never re-run. */
  changed: string[];
}

export async function readMigrations(dir: string = migrationsDir): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((file) => file.endsWith('.sql')).sort();
  return Promise.all(
    files.map(async (file) => {
      const text = await readFile(join(dir, file), 'utf8');
      const version = file.split('_')[0] ?? file;
      return { version, name: file, sql: upSection(text, file), checksum: sha256(text) };
    }),
  );
}

export function upSection(text: string, file: string): string {
  const up = text.indexOf('-- migrate:up');
  if (up === -1) throw new Error(`migration ${file} has no "-- migrate:up" section`);
  const down = text.indexOf('-- migrate:down', up);
  return text.slice(up + '-- migrate:up'.length, down === -1 ? undefined : down).trim();
}

export async function migrate(pool: Pool, logger: Logger, dir: string = migrationsDir): Promise<MigrationReport> {
  const migrations = await readMigrations(dir);
  const report = await withTransaction(pool, async (client) => {
    // A migration may take longer than the service's statement timeout.
    await client.query('SET LOCAL statement_timeout = 0');
    await client.query('SELECT pg_advisory_xact_lock($1)', [migrationLockKey]);
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version    text PRIMARY KEY,
      name       text NOT NULL,
      checksum   text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
    const { rows } = await client.query<{ version: string; checksum: string }>(
      'SELECT version, checksum FROM schema_migrations',
    );
    const known = new Map(rows.map((row) => [row.version, row.checksum]));
    const result: MigrationReport = { applied: [], changed: [] };
    for (const migration of migrations) {
      const checksum = known.get(migration.version);
      if (checksum !== undefined) {
        if (checksum !== migration.checksum) result.changed.push(migration.name);
        continue;
      }
      try {
        // node-postgres reads a per-query reply timeout too (not in its types): a long migration is not cut off.
        await client.query({ text: migration.sql, query_timeout: migrationTimeoutMs } as { text: string });
      } catch (error) {
        throw new Error(`migration ${migration.name} failed: ${(error as Error).message}`, { cause: error });
      }
      await client.query('INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)', [
        migration.version,
        migration.name,
        migration.checksum,
      ]);
      result.applied.push(migration.name);
    }
    return result;
  });
  for (const name of report.changed) {
    logger.warn(
      { migration: name },
      'migration file changed after it was applied; it is NOT re-run. Add a new migration instead',
    );
  }
  if (report.applied.length > 0) logger.info({ applied: report.applied }, 'migrations applied');
  return report;
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
