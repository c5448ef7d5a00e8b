// Tests for the project's sqlc process plugin (tools/sqlc-gen-ts), run on a
// GenerateRequest captured from the real sqlc for this repo's schema and
// queries. `npm test` needs no Go: sqlc itself only runs in `npm run sqlc`.
//
// test/fixtures/sqlc-generate-request.json was captured by running
// `sqlc generate` (v1.31.1) on a copy of sqlc.yaml whose ./scripts/sqlc-gen-ts
// was `cat > request.json; printf '{"files":[]}'`, with db/ and sql/
// symlinked to this repo, then pretty-printed. To keep it small, the tables of
// the built-in pg_catalog and information_schema schemas were dropped from
// `catalog` (the plugin reads only the catalog's enums). Everything else is as
// sqlc sent it.
//
// test/fixtures/sqlc-enums/request.json was captured the same way from
// test/fixtures/sqlc-enums/{schema,queries}.sql (this repo's schema has no
// enum): it shows how sqlc names enum types — `{schema: '', name: 'mood'}`,
// `{schema: 'public', name: 'mood'}`, `{schema: 'audit', name: 'level'}`
// on columns, `{schema: '', name: 'audit.level'}` on parameters — and lists
// each schema's enums as `catalog.schemas[].enums[] = {name, vals}`.

import { spawnSync } from 'node:child_process';
import { accessSync, constants, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { expect } from 'chai';
import ts from 'typescript';
import {
  type GeneratedFile,
  generate,
  HEADER,
  queryDecls,
  templateLiteralBody,
} from '../../tools/sqlc-gen-ts/generate.ts';
import { camelCase, dedupeColumnNames, outputFileName } from '../../tools/sqlc-gen-ts/naming.ts';
import type { Column, GenerateRequest, Query } from '../../tools/sqlc-gen-ts/request.ts';
import { parseGenerateRequest } from '../../tools/sqlc-gen-ts/request.ts';
import { columnTsType, enumIndex } from '../../tools/sqlc-gen-ts/types.ts';
import { useTestDatabase } from '../support/postgres.ts';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const fixturePath = join(repoRoot, 'test/fixtures/sqlc-generate-request.json');
const fixtureText = readFileSync(fixturePath, 'utf8');
const enumFixtureDir = join(repoRoot, 'test/fixtures/sqlc-enums');
const enumFixtureText = readFileSync(join(enumFixtureDir, 'request.json'), 'utf8');

function column(typeName: string | undefined, extra: Partial<Column> = {}): Column {
  return {
    name: 'c',
    notNull: true,
    isArray: false,
    arrayDims: 0,
    isNamedParam: false,
    type: typeName === undefined ? undefined : { catalog: '', schema: '', name: typeName },
    ...extra,
  };
}

function query(overrides: Partial<Query>): Query {
  return {
    name: 'Q',
    cmd: ':exec',
    text: 'SELECT 1',
    filename: 'q.sql',
    columns: [],
    params: [],
    comments: [],
    ...overrides,
  };
}

/** The generated declaration that starts with `start` (a function, interface or const). */
function decl(file: GeneratedFile, start: string): string {
  const at = file.contents.indexOf(start);
  expect(at, `${start} in ${file.name}`).to.be.at.least(0);
  const end = file.contents.indexOf('\n\n', at);
  return file.contents.slice(at, end < 0 ? undefined : end);
}

/**
 * Compiler diagnostics ("file:line: message") for generated files, checked as
 * if they sat in src/db/ under the repo's compiler settings (strict,
 * noUncheckedIndexedAccess, erasable syntax); [] when they compile.
 */
function typecheck(generated: readonly GeneratedFile[]): string[] {
  const dir = join(repoRoot, 'src/db/__sqlc_plugin_test__');
  const virtual = new Map(generated.map((f) => [join(dir, f.name), f.contents]));
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    lib: ['lib.es2023.d.ts'],
    types: ['node'],
    strict: true,
    noUncheckedIndexedAccess: true,
    verbatimModuleSyntax: true,
    erasableSyntaxOnly: true,
    skipLibCheck: true,
    noEmit: true,
  };
  const host = ts.createCompilerHost(options);
  const { fileExists, readFile, getSourceFile } = host;
  host.fileExists = (name) => virtual.has(name) || fileExists.call(host, name);
  host.readFile = (name) => virtual.get(name) ?? readFile.call(host, name);
  host.getSourceFile = (name, version, ...rest) => {
    const text = virtual.get(name);
    return text === undefined
      ? getSourceFile.call(host, name, version, ...rest)
      : ts.createSourceFile(name, text, version, true, ts.ScriptKind.TS);
  };
  const program = ts.createProgram([...virtual.keys()], options, host);
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const where = d.file ? `${d.file.fileName}:${d.file.getLineAndCharacterOfPosition(d.start ?? 0).line + 1}: ` : '';
    return where + ts.flattenDiagnosticMessageText(d.messageText, '\n');
  });
}

describe('sqlc-gen-ts plugin', () => {
  let request: GenerateRequest;
  let files: GeneratedFile[];
  let jobs: GeneratedFile;
  let messages: GeneratedFile;

  before(() => {
    request = parseGenerateRequest(fixtureText);
    files = generate(request);
    const byName = new Map(files.map((f) => [f.name, f]));
    jobs = byName.get('jobs_sql.ts')!;
    messages = byName.get('messages_sql.ts')!;
  });

  describe('the captured request', () => {
    it('is what sqlc v1.31.1 sends for this repo', () => {
      expect(request.sqlcVersion).to.equal('v1.31.1');
      expect(JSON.parse(request.pluginOptions)).to.deep.equal({ driver: 'pg', runtime: 'node' });
      expect(request.queries.map((q) => q.filename)).to.include.members(['jobs.sql', 'messages.sql']);
    });
  });

  describe('files', () => {
    it('emits one file per query file, named like sqlc-gen-typescript does', () => {
      const expected = [...new Set(request.queries.map((q) => outputFileName(q.filename)))];
      expect(files.map((f) => f.name)).to.deep.equal(expected);
      expect(jobs, 'jobs_sql.ts').to.exist;
      expect(messages, 'messages_sql.ts').to.exist;
    });

    it('starts every file with the sqlc header, a type-only pg import and the Client interface', () => {
      for (const file of files) {
        expect(file.contents.startsWith(`${HEADER}\n\nimport type { QueryArrayConfig, QueryArrayResult } from "pg";\n`))
          .to.be.true;
        expect(file.contents).to.include(
          'interface Client {\n    query: (config: QueryArrayConfig) => Promise<QueryArrayResult>;\n}',
        );
        expect(file.contents).not.to.match(/^import \{/m);
      }
    });

    it('exports, per query, the SQL constant with the name comment and the text sqlc rewrote', () => {
      const claim = request.queries.find((q) => q.name === 'ClaimDueJobs')!;
      expect(jobs.contents).to.include(
        `export const claimDueJobsQuery = \`-- name: ClaimDueJobs :many\n${claim.text}\`;`,
      );
      for (const q of request.queries.filter((q) => q.filename === 'jobs.sql')) {
        expect(jobs.contents).to.include(`export const ${q.name[0]!.toLowerCase()}${q.name.slice(1)}Query = \``);
      }
    });

    it('typechecks under the repo compiler settings (strict, noUncheckedIndexedAccess, erasable syntax)', function () {
      this.timeout(60_000);
      // Plus every command and the less common types, which the captured queries do not all use.
      const extra = generate({
        ...request,
        queries: [
          query({
            name: 'Odd',
            cmd: ':one',
            filename: 'extra.sql',
            params: [
              { number: 1, column: column('interval', { name: 'wait', notNull: false }) },
              { number: 2, column: column('int4', { name: 'grid', isArray: true, arrayDims: 2 }) },
            ],
            columns: [
              column('bytea', { name: 'blob' }),
              column('point', { name: 'at', notNull: false }),
              column('jsonb', { name: 'doc' }),
              column('int8', { name: 'id' }),
              column('int8', { name: 'id' }),
            ],
          }),
          query({ name: 'Touch', cmd: ':exec', filename: 'extra.sql' }),
          query({ name: 'Purge', cmd: ':execrows', filename: 'extra.sql' }),
          query({ name: 'All', cmd: ':many', filename: 'extra.sql', columns: [column('bool', { name: 'ok' })] }),
        ],
      });
      expect(typecheck([...files, ...extra])).to.deep.equal([]);
    });
  });

  describe('commands', () => {
    it(':one returns Row | null and null unless exactly one row came back', () => {
      const fn = decl(jobs, 'export async function getJobByName(');
      expect(fn).to.include(
        'export async function getJobByName(client: Client, args: GetJobByNameArgs): Promise<GetJobByNameRow | null> {',
      );
      expect(fn).to.include('values: [args.name],\n        rowMode: "array"');
      expect(fn).to.include('if (result.rows.length !== 1) {\n        return null;\n    }');
      expect(fn).to.include('id: row[0],');
      expect(fn).to.include('updatedAt: row[12]\n    };');
    });

    it(':many returns Row[] and takes no args when the query has no parameters', () => {
      const fn = decl(jobs, 'export async function listJobs(');
      expect(fn).to.include('export async function listJobs(client: Client): Promise<ListJobsRow[]> {');
      expect(fn).to.include('values: [],');
      expect(fn).to.include('return result.rows.map(row => {');
      expect(jobs.contents).not.to.include('ListJobsArgs');
    });

    it(':many with array parameters', () => {
      expect(decl(messages, 'export async function insertMessages(')).to.include(
        'export async function insertMessages(client: Client, args: InsertMessagesArgs): Promise<InsertMessagesRow[]> {',
      );
      expect(decl(messages, 'export interface InsertMessagesArgs')).to.equal(
        'export interface InsertMessagesArgs {\n    recipients: string[];\n    contents: string[];\n}',
      );
    });

    it(':exec returns void', () => {
      const q = query({
        name: 'TouchJob',
        cmd: ':exec',
        params: [{ number: 1, column: column('int8', { name: 'id' }) }],
      });
      const fn = queryDecls(q).at(-1)!;
      expect(fn).to.equal(
        [
          'export async function touchJob(client: Client, args: TouchJobArgs): Promise<void> {',
          '    await client.query({',
          '        text: touchJobQuery,',
          '        values: [args.id],',
          '        rowMode: "array"',
          '    });',
          '}',
        ].join('\n'),
      );
      for (const exec of request.queries.filter((r) => r.cmd === ':exec')) {
        const file = files.find((f) => f.name === outputFileName(exec.filename))!;
        expect(file.contents).to.match(
          new RegExp(
            `export async function ${exec.name[0]!.toLowerCase()}${exec.name.slice(1)}\\(client: Client(, args: ${exec.name}Args)?\\): Promise<void> \\{`,
          ),
        );
      }
    });

    it(':execrows returns the number of affected rows', () => {
      const fn = decl(jobs, 'export async function startJobs(');
      expect(fn).to.include('export async function startJobs(client: Client, args: StartJobsArgs): Promise<number> {');
      expect(fn).to.include('return result.rowCount ?? 0;');
      expect(decl(messages, 'export async function releaseExpiredMessageLeases(')).to.include(
        'export async function releaseExpiredMessageLeases(client: Client): Promise<number> {',
      );
    });

    it(':execrows with array parameters (RecordDeliveryOutcomes)', () => {
      expect(decl(messages, 'export interface RecordDeliveryOutcomesArgs')).to.equal(
        [
          'export interface RecordDeliveryOutcomesArgs {',
          '    owner: string;',
          '    ids: string[];',
          '    statuses: string[];',
          '    externalMessageIds: string[];',
          '    errors: string[];',
          '    retryDelaysMs: number[];',
          '}',
        ].join('\n'),
      );
      const fn = decl(messages, 'export async function recordDeliveryOutcomes(');
      expect(fn).to.include(
        'values: [args.owner, args.ids, args.statuses, args.externalMessageIds, args.errors, args.retryDelaysMs],',
      );
    });

    it('sqlc.narg parameters are nullable, sqlc.arg ones are not', () => {
      expect(decl(jobs, 'export interface UpdateJobSettingsArgs')).to.equal(
        [
          'export interface UpdateJobSettingsArgs {',
          '    intervalSeconds: number | null;',
          '    batchSize: number | null;',
          '    name: string;',
          '}',
        ].join('\n'),
      );
      expect(decl(jobs, 'export interface StartJobsArgs')).to.equal(
        'export interface StartJobsArgs {\n    name: string | null;\n}',
      );
    });

    it('rejects commands the pg driver cannot implement', () => {
      expect(() => queryDecls(query({ cmd: ':execlastid' }))).to.throw(/does not support :execlastid/);
      expect(() => queryDecls(query({ cmd: ':copyfrom' }))).to.throw(/unsupported command :copyfrom/);
      expect(() => queryDecls(query({ cmd: ':one' }))).to.throw(/needs result columns/);
    });

    it('rejects drivers other than pg', () => {
      const postgres = { ...request, pluginOptions: '{"driver":"postgres","runtime":"node"}' };
      expect(() => generate(postgres)).to.throw(/unsupported driver: postgres/);
    });
  });

  describe('type mapping (sqlc-gen-typescript pg driver)', () => {
    const cases: Array<[string, string]> = [
      ['int2', 'number'],
      ['int4', 'number'],
      ['pg_catalog.int4', 'number'],
      ['float4', 'number'],
      ['float8', 'number'],
      ['serial', 'number'],
      ['oid', 'number'],
      ['int8', 'string'],
      ['pg_catalog.int8', 'string'],
      ['bigint', 'string'],
      ['numeric', 'string'],
      ['text', 'string'],
      ['varchar', 'string'],
      ['uuid', 'string'],
      ['bool', 'boolean'],
      ['pg_catalog.bool', 'boolean'],
      ['timestamptz', 'Date'],
      ['timestamp', 'Date'],
      ['date', 'Date'],
      ['time', 'Date'],
      ['json', 'any'],
      ['jsonb', 'any'],
      ['bytea', 'Buffer'],
      ['interval', 'IPostgresInterval'],
      ['point', '{ x: number; y: number }'],
      // Names the official driver does not list fall back to string, as there.
      ['integer', 'string'],
      ['any', 'string'],
    ];
    for (const [pg, tsType] of cases) {
      it(`${pg} -> ${tsType}`, () => expect(columnTsType(column(pg))).to.equal(tsType));
    }

    it('nullable columns are T | null', () => {
      expect(columnTsType(column('timestamptz', { notNull: false }))).to.equal('Date | null');
    });

    it('arrays are T[] per dimension, null outside', () => {
      expect(columnTsType(column('uuid', { isArray: true, arrayDims: 1 }))).to.equal('string[]');
      expect(columnTsType(column('int4', { isArray: true, arrayDims: 0 }))).to.equal('number[]');
      expect(columnTsType(column('int4', { isArray: true, arrayDims: 2, notNull: false }))).to.equal(
        'number[][] | null',
      );
    });

    it('a column without type information is any', () => {
      expect(columnTsType(column(undefined))).to.equal('any');
      expect(columnTsType(undefined)).to.equal('any');
    });

    it('types the captured ListJobs row like sqlc-gen-typescript would', () => {
      expect(decl(jobs, 'export interface ListJobsRow')).to.include(
        '    id: string;\n    name: string;\n    handler: string;\n    intervalSeconds: number;',
      );
      expect(decl(jobs, 'export interface ListJobsRow')).to.include('    lastTriggeredAt: Date | null;');
    });

    it('imports IPostgresInterval (type-only) only when an interval is used', () => {
      const q = query({ name: 'Wait', cmd: ':one', columns: [column('interval', { name: 'left' })] });
      const file = generate({ ...request, queries: [q] })[0]!;
      expect(file.contents).to.include('import type { IPostgresInterval } from "postgres-interval";');
      expect(jobs.contents).not.to.include('postgres-interval');
    });
  });

  describe('naming', () => {
    it('camelCases like the official plugin', () => {
      expect(camelCase('retry_delays_ms')).to.equal('retryDelaysMs');
      expect(camelCase('sent_at_cursor')).to.equal('sentAtCursor');
      expect(camelCase('ID')).to.equal('id');
      expect(camelCase('col_2')).to.equal('col_2');
    });

    it('names unnamed parameters and columns by position', () => {
      const q = query({
        name: 'Anon',
        cmd: ':one',
        params: [{ number: 1, column: column('text', { name: '' }) }],
        columns: [column('int4', { name: '' })],
      });
      const decls = queryDecls(q).join('\n\n');
      expect(decls).to.include('export interface AnonArgs {\n    arg_0: string;\n}');
      expect(decls).to.include('export interface AnonRow {\n    col_0: number;\n}');
    });

    it('renames repeated result columns', () => {
      expect(dedupeColumnNames(['id', 'name', 'id', 'id'])).to.deep.equal(['id', 'name', 'id_2', 'id_3']);
    });

    it('names files after the query file', () => {
      expect(outputFileName('jobs.sql')).to.equal('jobs_sql.ts');
      expect(outputFileName('messages.sql')).to.equal('messages_sql.ts');
    });
  });

  describe('SQL text', () => {
    it('escapes template-literal syntax so the constant holds the exact SQL', () => {
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a literal ${ inside SQL is the point of this test
      const sql = "SELECT '`' || E'\\\\n' || '${x}' AS odd";
      const body = templateLiteralBody(sql);
      expect(new Function(`return \`${body}\`;`)()).to.equal(sql);
    });
  });

  describe('protocol', () => {
    it('reads protojson in either field-name spelling', () => {
      const camel = parseGenerateRequest(
        JSON.stringify({
          sqlcVersion: 'v1.31.1',
          pluginOptions: Buffer.from('{"driver":"pg"}').toString('base64'),
          queries: [
            {
              name: 'Get',
              cmd: ':one',
              text: 'SELECT $1::int4[]',
              filename: 'a.sql',
              columns: [{ name: 'x', notNull: true, type: { name: 'int4' } }],
              parameters: [
                {
                  number: 1,
                  column: { name: 'ids', notNull: true, isArray: true, arrayDims: 1, type: { name: 'int4' } },
                },
              ],
            },
          ],
        }),
      );
      expect(camel.pluginOptions).to.equal('{"driver":"pg"}');
      expect(camel.queries[0]!.params[0]!.column).to.include({
        name: 'ids',
        notNull: true,
        isArray: true,
        arrayDims: 1,
      });
    });

    it('runs as sqlc runs it: scripts/sqlc-gen-ts, no environment, JSON in and out', function () {
      this.timeout(30_000);
      const result = spawnSync(join(repoRoot, 'scripts/sqlc-gen-ts'), ['/plugin.CodegenService/Generate'], {
        input: fixtureText,
        env: { SQLC_VERSION: 'v1.31.1' },
        cwd: repoRoot,
        encoding: 'utf8',
      });
      expect(result.stderr).to.equal('');
      expect(result.status).to.equal(0);
      const response = JSON.parse(result.stdout) as { files: Array<{ name: string; contents: string }> };
      expect(
        response.files.map((f) => ({ name: f.name, contents: Buffer.from(f.contents, 'base64').toString('utf8') })),
      ).to.deep.equal(files);
    });

    it('fails with a message on stderr for a bad request', () => {
      const result = spawnSync(join(repoRoot, 'scripts/sqlc-gen-ts'), ['/plugin.CodegenService/Generate'], {
        input: JSON.stringify({ plugin_options: Buffer.from('{"driver":"mysql2"}').toString('base64'), queries: [] }),
        env: {},
        encoding: 'utf8',
      });
      expect(result.status).to.equal(1);
      expect(result.stderr).to.match(/sqlc-gen-ts: unsupported driver: mysql2/);
    });
  });
});

/** sqlc on PATH or in Go's default bin directory, or undefined when it is not installed. */
function findSqlc(): string | undefined {
  const dirs = (process.env.PATH ?? '').split(delimiter).filter((d) => d !== '');
  if (process.env.HOME) dirs.push(join(process.env.HOME, 'go', 'bin'));
  for (const dir of dirs) {
    try {
      accessSync(join(dir, 'sqlc'), constants.X_OK);
      return join(dir, 'sqlc');
    } catch {
      // not here
    }
  }
  return undefined;
}

describe('sqlc-gen-ts plugin: PostgreSQL enums', () => {
  const MOOD = '"low" | "mid" | "high"';
  const LEVEL = '"info" | "warn" | "it\'s \\"odd\\""';
  let request: GenerateRequest;
  let file: GeneratedFile;

  before(() => {
    request = parseGenerateRequest(enumFixtureText);
    const files = generate(request);
    expect(files.map((f) => f.name)).to.deep.equal(['queries_sql.ts']);
    file = files[0]!;
  });

  it("reads each schema's enums from the request's catalog, labels in declaration order", () => {
    expect(request.catalog.defaultSchema).to.equal('public');
    const enums = request.catalog.schemas.filter((s) => s.enums.length > 0);
    expect(enums).to.deep.equal([
      // 'mid' came from ALTER TYPE mood ADD VALUE 'mid' BEFORE 'high'.
      { name: 'public', enums: [{ name: 'mood', values: ['low', 'mid', 'high'] }] },
      { name: 'audit', enums: [{ name: 'level', values: ['info', 'warn', 'it\'s "odd"'] }] },
    ]);
  });

  it('types a NOT NULL enum column as the union of its labels', () => {
    expect(decl(file, 'export interface GetPersonRow')).to.include(`    current: ${MOOD};\n`);
    expect(decl(file, 'export interface PeopleByMoodRow')).to.include(`    current: ${MOOD};\n`);
  });

  it('adds | null for a nullable enum column', () => {
    expect(decl(file, 'export interface GetPersonRow')).to.include(`    previous: ${MOOD} | null;\n`);
  });

  it('types arrays of an enum as (union)[], nullable ones with | null outside', () => {
    const row = decl(file, 'export interface GetPersonRow');
    expect(row).to.include(`    history: (${MOOD})[];\n`);
    expect(row).to.include(`    maybeHistory: (${MOOD})[] | null;\n`);
  });

  it('resolves an enum of another schema, escaping labels as TS string literals', () => {
    expect(decl(file, 'export interface GetPersonRow')).to.include(`    lvl: ${LEVEL} | null;\n`);
    const events = decl(file, 'export interface EventsAtLevelRow');
    expect(events).to.include(`    lvl: ${LEVEL};\n`);
    expect(events).to.include(`    levels: (${LEVEL})[] | null;\n`);
  });

  it('types parameters of an enum type, however sqlc spells the type name', () => {
    // {schema:'', name:'mood'}, sqlc.narg -> nullable
    expect(decl(file, 'export interface PeopleByMoodArgs')).to.equal(
      `export interface PeopleByMoodArgs {\n    current: ${MOOD};\n    previous: ${MOOD} | null;\n}`,
    );
    // sqlc.arg(moods)::mood[]
    expect(decl(file, 'export interface PeopleInMoodsArgs')).to.equal(
      `export interface PeopleInMoodsArgs {\n    moods: (${MOOD})[];\n}`,
    );
    // {schema:'', name:'audit.level'} on parameters compared with an audit.level column
    expect(decl(file, 'export interface EventsAtLevelArgs')).to.equal(
      `export interface EventsAtLevelArgs {\n    lvl: ${LEVEL};\n}`,
    );
    expect(decl(file, 'export interface AddEventArgs')).to.include(`    levels: (${LEVEL})[] | null;\n`);
    // $1::public.mood ({schema:'public'}) and sqlc.arg(bare)::mood ({schema:''})
    expect(decl(file, 'export interface MoodOfArgs')).to.equal(
      `export interface MoodOfArgs {\n    arg_0: ${MOOD};\n    bare: ${MOOD};\n}`,
    );
  });

  it('maps names that are not an enum of the catalog as before, and odd enums sensibly', () => {
    const enums = enumIndex({
      defaultSchema: 'public',
      schemas: [
        {
          name: 'public',
          enums: [
            { name: 'only', values: ['one'] },
            { name: 'none', values: [] },
          ],
        },
        { name: 'audit', enums: [{ name: 'level', values: ['info', 'warn'] }] },
      ],
    });
    const type = (name: string, schema = '') => ({ type: { catalog: '', schema, name } });
    // An unqualified name resolves in the default schema only, as PostgreSQL's search_path does.
    expect(columnTsType(column('level'), enums)).to.equal('string');
    expect(columnTsType(column('x', type('level', 'audit')), enums)).to.equal('"info" | "warn"');
    expect(columnTsType(column('text'), enums)).to.equal('string');
    expect(columnTsType(column('pg_catalog.int4'), enums)).to.equal('number');
    // One label needs no parentheses; an enum without labels has no values.
    expect(columnTsType(column('only', { isArray: true, arrayDims: 1 }), enums)).to.equal('"one"[]');
    expect(columnTsType(column('none', { notNull: false }), enums)).to.equal('never | null');
    expect(columnTsType(column('audit.level', { isArray: true, arrayDims: 2 }), enums)).to.equal(
      '("info" | "warn")[][]',
    );
    // Without the catalog (the default), an enum is text, as in the official driver.
    expect(columnTsType(column('only'))).to.equal('string');
  });

  it('imports the array parser only where a result column is an enum array', () => {
    expect(file.contents).to.include('import { types } from "pg";');
    expect(decl(file, 'export async function getPerson(')).to.include(
      '        history: enumArray(row[3]),\n        maybeHistory: enumArray(row[4]),\n        lvl: row[5]\n',
    );
    // Enum arrays as parameters need no parsing: node-postgres writes JS arrays as array literals.
    const params = generate({ ...request, queries: request.queries.filter((q) => q.name === 'PeopleInMoods') });
    expect(params[0]!.contents).not.to.include('import { types }');
    expect(params[0]!.contents).not.to.include('enumArray');
  });

  it('generates TypeScript that compiles under the repo settings', function () {
    this.timeout(60_000);
    expect(typecheck([file])).to.deep.equal([]);
  });

  describe('against a real PostgreSQL', () => {
    const db = useTestDatabase({ migrate: false });
    let dir: string;
    let q: Record<string, (client: unknown, args?: unknown) => Promise<unknown>>;

    before(async () => {
      await db().pool.query(readFileSync(join(enumFixtureDir, 'schema.sql'), 'utf8'));
      // Inside the repo so the generated file's `import ... from "pg"` resolves.
      dir = mkdtempSync(join(repoRoot, 'test/.sqlc-enums-'));
      writeFileSync(join(dir, file.name), file.contents);
      q = await import(pathToFileURL(join(dir, file.name)).href);
    });

    after(() => {
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('returns enum values and enum arrays as the types say', async () => {
      const pool = db().pool;
      const added = (await q.addPerson!(pool, {
        current: 'high',
        previous: null,
        history: ['low', 'mid', 'high'],
        maybeHistory: null,
        lvl: 'it\'s "odd"',
      })) as { id: string };
      expect(await q.getPerson!(pool, { id: added.id })).to.deep.equal({
        id: added.id,
        current: 'high',
        previous: null,
        history: ['low', 'mid', 'high'],
        maybeHistory: null,
        lvl: 'it\'s "odd"',
      });
      expect(await q.peopleInMoods!(pool, { moods: ['mid', 'high'] })).to.deep.equal([{ id: added.id }]);
      expect(await q.peopleByMood!(pool, { current: 'high', previous: null })).to.deep.equal([
        { id: added.id, current: 'high' },
      ]);
      const event = (await q.addEvent!(pool, { lvl: 'warn', levels: ['it\'s "odd"', 'info'] })) as { id: string };
      expect(await q.eventsAtLevel!(pool, { lvl: 'warn' })).to.deep.equal([
        { id: event.id, lvl: 'warn', levels: ['it\'s "odd"', 'info'] },
      ]);
      expect(await q.moodOf!(pool, { arg_0: 'low', bare: 'mid' })).to.deep.equal({ qualified: 'low', bare: 'mid' });
    });

    it('refuses a value that is not a label, as the union type does at compile time', async () => {
      let error: unknown;
      try {
        await q.peopleInMoods!(db().pool, { moods: ['sad'] });
      } catch (e) {
        error = e;
      }
      expect(error).to.be.instanceOf(Error);
      expect((error as Error).message).to.equal('invalid input value for enum mood: "sad"');
    });
  });

  describe('with the real sqlc', () => {
    it('generates the union types from the fixture schema, and code that compiles', function () {
      this.timeout(120_000);
      const sqlc = findSqlc();
      if (sqlc === undefined) {
        console.log('      (sqlc not installed: skipping; `npm run sqlc` installs it with Go)');
        this.skip();
      }
      const work = mkdtempSync(join(tmpdir(), 'sqlc-enums-'));
      try {
        cpSync(join(enumFixtureDir, 'schema.sql'), join(work, 'schema/schema.sql'));
        cpSync(join(enumFixtureDir, 'queries.sql'), join(work, 'queries/queries.sql'));
        writeFileSync(
          join(work, 'sqlc.yaml'),
          [
            'version: "2"',
            'plugins:',
            '  - name: ts',
            '    process:',
            `      cmd: ${join(repoRoot, 'scripts/sqlc-gen-ts')}`,
            '      format: json',
            'sql:',
            '  - engine: postgresql',
            '    schema: schema',
            '    queries: queries',
            '    codegen:',
            '      - plugin: ts',
            '        out: out',
            '        options:',
            '          runtime: node',
            '          driver: pg',
            '',
          ].join('\n'),
        );
        const result = spawnSync(sqlc, ['generate'], { cwd: work, encoding: 'utf8' });
        expect(result.stderr).to.equal('');
        expect(result.status).to.equal(0);
        const generated = readFileSync(join(work, 'out/queries_sql.ts'), 'utf8');
        expect(generated).to.include(`    history: (${MOOD})[];\n`);
        expect(generated).to.include(`    previous: ${MOOD} | null;\n`);
        expect(generated).to.include(`    levels: (${LEVEL})[] | null;\n`);
        expect(typecheck([{ name: 'queries_sql.ts', contents: generated }])).to.deep.equal([]);
        // The captured request the other tests use is still what sqlc sends.
        expect(generated).to.equal(file.contents);
      } finally {
        rmSync(work, { recursive: true, force: true });
      }
    });
  });
});
