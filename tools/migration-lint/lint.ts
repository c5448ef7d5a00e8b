// The migration lint (`npm run lint:migrations`): refuses a migration that
// would hold a lock blocking intake or dispatch for longer than a moment.
// Squawk (npm squawk-cli, a Rust binary shipped as an npm package, so it runs
// offline) checks the SQL; the rules it cannot know (dbmate's transaction:false
// files, a lock_timeout set to 0) are checked here. The rules, and why, are in
// docs/development.md "Writing a migration".
import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { concurrentIndexName, type Migration, migrationsDir, readMigrations } from '../../src/db/migrator.ts';

/** Files up to this version were applied before these rules; they are never edited, so they are not linted. */
export const exemptThrough = '20261130005000';

/**
 * Squawk's default rules stay on (index without CONCURRENTLY on an existing
 * table, constraint without NOT VALID, foreign key, volatile default, column
 * type change, SET NOT NULL, lock_timeout missing, …) except these:
 * - require-statement-timeout: the migrator runs migrations with
 *   statement_timeout 0 on purpose; a VALIDATE or a CONCURRENTLY build that
 *   takes minutes holds no lock that blocks traffic and must not be cut off.
 * - prefer-bigint-over-int: a column-type preference, not a lock.
 */
export const squawkExcludedRules = ['require-statement-timeout', 'prefer-bigint-over-int'];

export interface Finding {
  file: string;
  /** 1-based line in the file. */
  line: number;
  rule: string;
  message: string;
}

export interface LintResult {
  /** The files linted (not exempt). */
  checked: string[];
  findings: Finding[];
}

/** Lints every migration of `dir` newer than `exempt`. @throws when squawk cannot run */
export async function lintMigrations(dir: string = migrationsDir, exempt: string = exemptThrough): Promise<LintResult> {
  const migrations = (await readMigrations(dir)).filter((migration) => migration.version > exempt);
  const findings: Finding[] = [];
  for (const migration of migrations) {
    const text = await readFile(join(dir, migration.name), 'utf8');
    const offset = text.slice(0, text.indexOf(migration.sql)).split('\n').length;
    const at = (line: number, rule: string, message: string) =>
      findings.push({ file: migration.name, line: offset + line, rule, message });
    for (const finding of ownRules(migration)) at(finding.line, finding.rule, finding.message);
    for (const finding of squawk(migration)) at(finding.line, finding.rule, finding.message);
  }
  return { checked: migrations.map((migration) => migration.name), findings };
}

type LocalFinding = Omit<Finding, 'file'>;

function ownRules(migration: Migration): LocalFinding[] {
  const statements = splitStatements(migration.sql);
  const findings: LocalFinding[] = [];
  for (const statement of statements) {
    const value = lockTimeoutValue(statement.text);
    if (value !== undefined && isZeroTimeout(value)) {
      findings.push({
        line: statement.line,
        rule: 'lock-timeout-disabled',
        message: `lock_timeout set to ${value}: a lock this migration waits for would block every query queued behind it`,
      });
    }
  }
  if (migration.transactional) {
    const first = statements[0];
    if (!first || lockTimeoutValue(first.text) === undefined) {
      findings.push({
        line: first?.line ?? 0,
        rule: 'lock-timeout-first',
        message: "the up section must start with SET lock_timeout (e.g. SET lock_timeout = '5s';)",
      });
    }
    return findings;
  }
  const [only, ...more] = statements;
  if (!only || more.length > 0 || !isConcurrentIndexStatement(only.text)) {
    findings.push({
      line: more[0]?.line ?? only?.line ?? 0,
      rule: 'transaction-false-one-statement',
      message:
        'a transaction:false file holds exactly one statement: CREATE [UNIQUE] INDEX CONCURRENTLY IF NOT EXISTS <name> ON … ' +
        'or DROP INDEX CONCURRENTLY IF EXISTS <name> (no SET: the migrator runs it with lock_timeout off)',
    });
  }
  return findings;
}

function isConcurrentIndexStatement(text: string): boolean {
  if (/^DROP\s+INDEX\s+CONCURRENTLY\s+IF\s+EXISTS\s/i.test(text)) return true;
  return concurrentIndexName(text) !== undefined && /\bCONCURRENTLY\s+IF\s+NOT\s+EXISTS\b/i.test(text);
}

/** The value a `SET [LOCAL|SESSION] lock_timeout = …` statement sets, as written. */
function lockTimeoutValue(text: string): string | undefined {
  return /^SET\s+(?:LOCAL\s+|SESSION\s+)?lock_timeout\s*(?:=|\bTO\b)\s*(.+?)\s*$/is.exec(text)?.[1];
}

function isZeroTimeout(value: string): boolean {
  return /^(DEFAULT|'?0+(\.0*)?\s*(us|ms|s|min|h|d)?'?)$/i.test(value);
}

/** The up section's statements, comments removed, with their 0-based line in the section. */
export function splitStatements(sql: string): Array<{ text: string; line: number }> {
  const statements: Array<{ text: string; line: number }> = [];
  let current = '';
  let start = -1;
  let line = 0;
  for (let i = 0; i < sql.length; ) {
    const rest = sql.slice(i);
    const skipped = /^(--[^\n]*|\/\*[\s\S]*?\*\/)/.exec(rest);
    const quoted = /^('(?:[^']|'')*'|"(?:[^"]|"")*"|(\$[A-Za-z_]*\$)[\s\S]*?\2)/.exec(rest);
    const token = skipped?.[0] ?? quoted?.[0] ?? (sql[i] as string);
    if (token === ';') {
      if (current.trim()) statements.push({ text: current.trim(), line: start });
      current = '';
      start = -1;
    } else if (!skipped) {
      if (start === -1 && token.trim()) start = line;
      current += token;
    }
    line += token.split('\n').length - 1;
    i += token.length;
  }
  if (current.trim()) statements.push({ text: current.trim(), line: start });
  return statements;
}

interface SquawkViolation {
  line: number;
  rule_name: string;
  message: string;
  help?: string;
}

function squawk(migration: Migration): LocalFinding[] {
  const excluded = migration.transactional
    ? squawkExcludedRules
    : // The migrator runs a CONCURRENTLY statement with lock_timeout off (see src/db/migrator.ts).
      [...squawkExcludedRules, 'require-lock-timeout'];
  const args = ['--pg-version', '15.0', '--reporter', 'json', '--stdin-filepath', migration.name];
  args.push('--exclude', excluded.join(','));
  if (migration.transactional) args.push('--assume-in-transaction');
  const run = spawnSync(squawkBin(), args, { input: migration.sql, encoding: 'utf8' });
  let violations: SquawkViolation[];
  try {
    violations = JSON.parse(run.stdout || 'null') as SquawkViolation[];
    if (!Array.isArray(violations)) throw new Error('no JSON array');
  } catch {
    throw new Error(`squawk failed on ${migration.name} (exit ${run.status}): ${run.stderr || run.stdout}`);
  }
  return violations.map((violation) => ({
    line: violation.line, // squawk counts lines from 0
    rule: violation.rule_name,
    message: violation.help ? `${violation.message} ${violation.help}` : violation.message,
  }));
}

/** The platform binary squawk-cli's optional dependency installed (what its `squawk` wrapper starts). */
function squawkBin(): string {
  const fromSquawk = createRequire(createRequire(import.meta.url).resolve('squawk-cli/package.json'));
  const binary = process.platform === 'win32' ? 'squawk.exe' : 'squawk';
  return fromSquawk.resolve(`@squawk-cli/${process.platform}-${process.arch}/bin/${binary}`);
}
