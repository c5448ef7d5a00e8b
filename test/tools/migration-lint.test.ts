// The migration lint (`npm run lint:migrations`, part of `npm run lint`):
// one bad migration of each kind is refused, with the rule that caught it,
// and the forms docs/development.md "Writing a migration" recommends pass.
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { type Finding, lintMigrations, splitStatements } from '../../tools/migration-lint/lint.ts';

const timeout = "SET lock_timeout = '5s';\n";

const bad: Record<string, string> = {
  '20261207010001_index_without_concurrently.sql': `-- migrate:up\n${timeout}CREATE INDEX messages_x_idx ON messages (created_at);\n`,
  '20261207010002_check_without_not_valid.sql': `-- migrate:up\n${timeout}ALTER TABLE messages ADD CONSTRAINT messages_attempts_check CHECK (attempts >= 0);\n`,
  '20261207010003_foreign_key_without_not_valid.sql': `-- migrate:up\n${timeout}ALTER TABLE messages ADD CONSTRAINT messages_job_fk FOREIGN KEY (job_name) REFERENCES jobs (name);\n`,
  '20261207010004_volatile_default.sql': `-- migrate:up\n${timeout}ALTER TABLE messages ADD COLUMN token uuid DEFAULT gen_random_uuid();\n`,
  '20261207010005_type_change.sql': `-- migrate:up\n${timeout}ALTER TABLE messages ALTER COLUMN attempts TYPE bigint;\n`,
  '20261207010006_no_lock_timeout.sql': '-- migrate:up\nALTER TABLE messages ADD COLUMN note text;\n',
  '20261207010007_lock_timeout_off.sql':
    "-- migrate:up\nSET lock_timeout = '0';\nALTER TABLE messages ADD COLUMN note text;\n",
  '20261207010008_set_not_null.sql': `-- migrate:up\n${timeout}ALTER TABLE messages ALTER COLUMN note SET NOT NULL;\n`,
  '20261207010009_concurrently_in_transaction.sql': `-- migrate:up\n${timeout}CREATE INDEX CONCURRENTLY IF NOT EXISTS messages_y_idx ON messages (updated_at);\n`,
  '20261207010010_transaction_false_with_set.sql': `-- migrate:up transaction:false\n${timeout}CREATE INDEX CONCURRENTLY IF NOT EXISTS messages_y_idx ON messages (updated_at);\n`,
  '20261207010011_transaction_false_not_rerunnable.sql':
    '-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY messages_y_idx ON messages (updated_at);\n',
  '20261207010012_validate_in_same_transaction.sql': `-- migrate:up\n${timeout}ALTER TABLE messages ADD CONSTRAINT messages_attempts_check CHECK (attempts >= 0) NOT VALID;\nALTER TABLE messages VALIDATE CONSTRAINT messages_attempts_check;\n`,
};

const good: Record<string, string> = {
  '20261207010101_new_table.sql': `-- migrate:up\n${timeout}CREATE TABLE notes (id bigint PRIMARY KEY, body text NOT NULL);\nCREATE INDEX notes_body_idx ON notes (body);\n`,
  '20261207010102_columns_and_constraint.sql': `-- migrate:up
-- A comment; a; semicolon in it.
SET lock_timeout = '5s';
ALTER TABLE messages ADD COLUMN note text;
ALTER TABLE messages ADD COLUMN priority integer NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN noted_at timestamptz DEFAULT now();
ALTER TABLE messages ADD CONSTRAINT messages_priority_check CHECK (priority >= 0) NOT VALID;
-- migrate:down
DROP INDEX messages_y_idx;
`,
  '20261207010103_validate.sql': `-- migrate:up\n${timeout}ALTER TABLE messages VALIDATE CONSTRAINT messages_priority_check;\n`,
  '20261207010104_index.sql':
    '-- migrate:up transaction:false\n-- the claim by priority\nCREATE INDEX CONCURRENTLY IF NOT EXISTS messages_priority_idx ON messages (priority, created_at);\n',
  '20261207010105_drop_index.sql':
    '-- migrate:up transaction:false\nDROP INDEX CONCURRENTLY IF EXISTS messages_available_claim_idx;\n',
};

async function lintFiles(files: Record<string, string>) {
  const dir = await mkdtemp(join(tmpdir(), 'migration-lint-'));
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
  return lintMigrations(dir);
}

function rulesByFile(findings: Finding[]): Record<string, string[]> {
  const rules: Record<string, string[]> = {};
  for (const finding of findings) rules[finding.file] = [...(rules[finding.file] ?? []), finding.rule].sort();
  return rules;
}

describe('migration lint', () => {
  it('refuses one bad migration of each kind, naming the rule', async () => {
    const { checked, findings } = await lintFiles(bad);
    expect(checked).to.have.length(Object.keys(bad).length);
    expect(rulesByFile(findings)).to.deep.equal({
      '20261207010001_index_without_concurrently.sql': ['require-concurrent-index-creation'],
      '20261207010002_check_without_not_valid.sql': ['constraint-missing-not-valid'],
      '20261207010003_foreign_key_without_not_valid.sql': [
        'adding-foreign-key-constraint',
        'constraint-missing-not-valid',
      ],
      '20261207010004_volatile_default.sql': ['adding-field-with-default'],
      '20261207010005_type_change.sql': ['changing-column-type'],
      '20261207010006_no_lock_timeout.sql': ['lock-timeout-first', 'require-lock-timeout'],
      '20261207010007_lock_timeout_off.sql': ['lock-timeout-disabled'],
      '20261207010008_set_not_null.sql': ['adding-not-nullable-field'],
      '20261207010009_concurrently_in_transaction.sql': ['ban-concurrent-index-creation-in-transaction'],
      '20261207010010_transaction_false_with_set.sql': ['transaction-false-one-statement'],
      '20261207010011_transaction_false_not_rerunnable.sql': ['prefer-robust-stmts', 'transaction-false-one-statement'],
      '20261207010012_validate_in_same_transaction.sql': ['constraint-missing-not-valid'],
    });
  });

  it('names the line in the file, not in the up section', async () => {
    const { findings } = await lintFiles({
      '20261207010001_x.sql': `-- migrate:up\n\n-- why\n${timeout}\nCREATE INDEX messages_x_idx ON messages (created_at);\n`,
    });
    expect(findings.map((finding) => [finding.line, finding.rule])).to.deep.equal([
      [6, 'require-concurrent-index-creation'],
    ]);
  });

  it('accepts the recommended forms', async () => {
    const { checked, findings } = await lintFiles(good);
    expect(checked).to.have.length(Object.keys(good).length);
    expect(findings).to.deep.equal([]);
  });

  it('leaves the migrations applied before the rules alone, and passes the repository', async () => {
    const { checked } = await lintFiles({
      '20261130005000_old.sql': '-- migrate:up\nCREATE INDEX old_idx ON messages (created_at);\n',
    });
    expect(checked).to.deep.equal([]);
    expect((await lintMigrations()).findings).to.deep.equal([]);
  });

  it('splits statements outside comments, strings and dollar quotes', () => {
    const sql = 'SELECT \';\'; -- a; b\nDO $body$ BEGIN PERFORM 1; END $body$;\n/* x; */ SELECT "a;b"';
    expect(splitStatements(sql)).to.deep.equal([
      { text: "SELECT ';'", line: 0 },
      { text: 'DO $body$ BEGIN PERFORM 1; END $body$', line: 1 },
      { text: 'SELECT "a;b"', line: 2 },
    ]);
  });
});
