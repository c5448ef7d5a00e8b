// openapi.yaml -> TypeScript types of every path, operation and schema, with
// the openapi-typescript package (its Node API, the same code as its CLI).
// Pure apart from reading the spec, so the drift test can compare in memory.

import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import openapiTS, { astToString, COMMENT_HEADER } from 'openapi-typescript';
import { parse } from 'yaml';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** The contract the types come from. */
export const SPEC_PATH = resolve(repoRoot, 'openapi.yaml');

/** Where the generated types are committed (the `src/api/` room holds only generated contract types). */
export const OUTPUT_PATH = resolve(repoRoot, 'src/api/openapi.ts');

/** The first lines of the generated file. */
export const HEADER = `${COMMENT_HEADER}// Generated from openapi.yaml by \`npm run openapi:types\`; CI and \`npm test\` fail when it is stale.\n\n`;

/**
 * The contents of src/api/openapi.ts for an OpenAPI 3 document (the YAML text
 * of openapi.yaml by default): `paths`, `operations` and `components`
 * interfaces, e.g. `components['schemas']['Job']`. Throws when the document is
 * not valid YAML or openapi-typescript cannot read it.
 */
export async function generateOpenApiTypes(specText: string = readFileSync(SPEC_PATH, 'utf8')): Promise<string> {
  const document: unknown = parse(specText);
  const ast = await openapiTS(document as Parameters<typeof openapiTS>[0], {
    silent: true,
    // A field with a default (NewJob.active) stays optional: a client may omit it.
    defaultNonNullable: false,
  });
  return HEADER + astToString(ast);
}
