// src/api/openapi.ts is generated from openapi.yaml by openapi-typescript
// (`npm run openapi:types`). These tests fail when the committed file is stale
// and show why it exists: the services' API shapes are aliases of it, so a
// field added to the contract is a type error where the code must change.

import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import ts from 'typescript';
import { parseDocument } from 'yaml';
import { generateOpenApiTypes, OUTPUT_PATH, SPEC_PATH } from '../../tools/openapi-types/generate.ts';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * Compiler diagnostics ("path:line: message") for the given source files under
 * the repo's tsconfig, with src/api/openapi.ts replaced by `openapiTypes`.
 */
function typecheckWith(openapiTypes: string, rootFiles: string[]): string[] {
  const config = ts.getParsedCommandLineOfConfigFile(
    join(repoRoot, 'tsconfig.json'),
    {},
    {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: (d) => {
        throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n'));
      },
    },
  )!;
  const options = { ...config.options, noEmit: true };
  const host = ts.createCompilerHost(options);
  const { readFile, getSourceFile } = host;
  const replaced = resolve(OUTPUT_PATH);
  host.readFile = (name) => (resolve(name) === replaced ? openapiTypes : readFile.call(host, name));
  host.getSourceFile = (name, version, ...rest) =>
    resolve(name) === replaced
      ? ts.createSourceFile(name, openapiTypes, version, true, ts.ScriptKind.TS)
      : getSourceFile.call(host, name, version, ...rest);
  const program = ts.createProgram(
    rootFiles.map((f) => join(repoRoot, f)),
    options,
    host,
  );
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const where = d.file
      ? `${d.file.fileName.slice(repoRoot.length + 1)}:${d.file.getLineAndCharacterOfPosition(d.start ?? 0).line + 1}: `
      : '';
    return where + ts.flattenDiagnosticMessageText(d.messageText, ' ');
  });
}

/** openapi.yaml with one more required, non-nullable property on a schema. */
function specWithRequiredField(schema: string, field: string, type: string): string {
  const doc = parseDocument(readFileSync(SPEC_PATH, 'utf8'));
  doc.setIn(['components', 'schemas', schema, 'properties', field], doc.createNode({ type }));
  const required = doc.getIn(['components', 'schemas', schema, 'required']) as { add(v: unknown): void } | undefined;
  if (required) required.add(field);
  else doc.setIn(['components', 'schemas', schema, 'required'], doc.createNode([field]));
  return doc.toString();
}

const services = ['src/jobs/job-service.ts', 'src/messages/message-service.ts', 'src/messages/message-validation.ts'];

describe('generated API types (src/api/openapi.ts)', () => {
  let generated: string;

  before(async function () {
    this.timeout(60_000);
    generated = await generateOpenApiTypes();
  });

  it('is what openapi-typescript generates from the committed openapi.yaml (else run `npm run openapi:types`)', () => {
    const committed = readFileSync(OUTPUT_PATH, 'utf8');
    expect(committed === generated, 'src/api/openapi.ts is stale: run `npm run openapi:types` and commit it').to.be
      .true;
  });

  it('types every schema of the contract, request bodies with defaults optional', () => {
    expect(generated).to.include('        Job: {\n');
    expect(generated).to.include('        MessagePage: {\n');
    expect(generated).to.match(/ {8}NewJob: \{[^}]*\n {12}active\?: boolean;\n/);
    expect(generated).to.include('        JobStatus: "active" | "inactive" | "in_progress";\n');
  });

  it('the services compile against it', function () {
    this.timeout(60_000);
    expect(typecheckWith(generated, services)).to.deep.equal([]);
  });

  it('a response field added to openapi.yaml is a type error where the view is built', async function () {
    this.timeout(60_000);
    const types = await generateOpenApiTypes(specWithRequiredField('Message', 'priority', 'integer'));
    const errors = typecheckWith(types, services);
    expect(errors).to.have.length(1);
    expect(errors[0]).to.match(
      /^src\/messages\/message-service\.ts:\d+: Property 'priority' is missing in type .* but required in type/,
    );
  });

  it('a request field removed from openapi.yaml is a type error where the code reads it', async function () {
    this.timeout(60_000);
    const doc = parseDocument(readFileSync(SPEC_PATH, 'utf8'));
    doc.deleteIn(['components', 'schemas', 'JobUpdate', 'properties', 'batchSize']);
    const errors = typecheckWith(await generateOpenApiTypes(doc.toString()), services);
    expect(errors).to.have.length(1);
    expect(errors[0]).to.match(/^src\/jobs\/job-service\.ts:\d+: Property 'batchSize' does not exist on type/);
  });

  it('`npm run openapi:types -- --check` passes on the committed file and rejects unknown arguments', function () {
    this.timeout(60_000);
    const node = join(repoRoot, 'node_modules/.bin/node');
    const check = spawnSync(node, ['scripts/openapi-types.ts', '--check'], { cwd: repoRoot, encoding: 'utf8' });
    expect(check.stderr).to.equal('');
    expect(check.status).to.equal(0);
    const bad = spawnSync(node, ['scripts/openapi-types.ts', '--force'], { cwd: repoRoot, encoding: 'utf8' });
    expect(bad.status).to.equal(2);
    expect(bad.stderr).to.include('unknown argument(s): --force');
  });
});
