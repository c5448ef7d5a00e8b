// `npm run lint:migrations [-- <dir>]`: refuses a migration in db/migrations
// (or <dir>) that would hold a lock blocking intake or dispatch; exits 1 and
// names each finding as file:line rule. The rules: docs/development.md
// "Writing a migration".
import { relative } from 'node:path';
import { migrationsDir } from '../src/db/migrator.ts';
import { exemptThrough, lintMigrations } from '../tools/migration-lint/lint.ts';

const dir = process.argv[2] ?? migrationsDir;
const { checked, findings } = await lintMigrations(dir);
const shown = relative(process.cwd(), dir) || '.';
for (const finding of findings) {
  process.stderr.write(`${shown}/${finding.file}:${finding.line}: ${finding.rule}: ${finding.message}\n`);
}
process.stdout.write(
  `lint:migrations: ${checked.length} migration(s) checked in ${shown} (those through ${exemptThrough} were ` +
    `applied before these rules and are exempt), ${findings.length} finding(s)\n`,
);
process.exitCode = findings.length > 0 ? 1 : 0;
