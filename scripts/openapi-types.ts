// `npm run openapi:types` — regenerates src/api/openapi.ts from openapi.yaml.
// `npm run openapi:types -- --check` — exits non-zero (and changes nothing)
// when the committed file differs from what openapi.yaml generates now.

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, relative } from 'node:path';
import { generateOpenApiTypes, OUTPUT_PATH } from '../tools/openapi-types/generate.ts';

async function main(argv: string[]): Promise<number> {
  const check = argv.includes('--check');
  const unknown = argv.filter((a) => a !== '--check');
  if (unknown.length > 0) {
    process.stderr.write(
      `openapi:types: unknown argument(s): ${unknown.join(' ')}\nusage: npm run openapi:types [-- --check]\n`,
    );
    return 2;
  }
  const generated = await generateOpenApiTypes();
  const name = relative(process.cwd(), OUTPUT_PATH);
  if (check) {
    let committed = '';
    try {
      committed = readFileSync(OUTPUT_PATH, 'utf8');
    } catch {
      // missing counts as stale
    }
    if (committed === generated) return 0;
    process.stderr.write(
      `openapi:types: ${name} is out of date with openapi.yaml; run \`npm run openapi:types\` and commit it\n`,
    );
    return 1;
  }
  mkdirSync(dirname(OUTPUT_PATH), { recursive: true });
  writeFileSync(OUTPUT_PATH, generated);
  process.stdout.write(`openapi:types: wrote ${name}\n`);
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
