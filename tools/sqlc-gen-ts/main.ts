// sqlc process plugin (format: json): reads a protojson plugin.GenerateRequest
// on stdin, writes a protojson plugin.GenerateResponse on stdout. sqlc runs it
// as `<cmd> /plugin.CodegenService/Generate` with a minimal environment and
// shows whatever we print on stderr when we exit non-zero.

import { readFileSync } from 'node:fs';
import { generate } from './generate.ts';
import { parseGenerateRequest } from './request.ts';

const METHOD = '/plugin.CodegenService/Generate';

function main(): void {
  const method = process.argv[2];
  if (method !== undefined && method !== METHOD) {
    throw new Error(`unknown method ${method} (expected ${METHOD})`);
  }
  const request = parseGenerateRequest(readFileSync(0, 'utf8'));
  const files = generate(request);
  const response = {
    files: files.map((f) => ({ name: f.name, contents: Buffer.from(f.contents, 'utf8').toString('base64') })),
  };
  process.stdout.write(JSON.stringify(response));
}

try {
  main();
} catch (error) {
  process.stderr.write(`sqlc-gen-ts: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
}
