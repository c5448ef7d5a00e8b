// `npm run sqlc` — regenerates src/db/sqlc from sql/queries with the pinned sqlc.
// `npm run sqlc -- --check` — runs `sqlc diff`: exits non-zero if the committed
// generated code differs from what sqlc would generate now (CI's drift check).
//
// sqlc is taken from PATH, else from Go's bin directory; if it is missing and Go
// is installed, the pinned version is installed with `go install` first.

import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const SQLC_VERSION = 'v1.31.1';
const SQLC_MODULE = `github.com/sqlc-dev/sqlc/cmd/sqlc@${SQLC_VERSION}`;
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function findOnPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir !== '' && isExecutable(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

/** `go env NAME`, or undefined if go cannot tell. */
function goEnv(go: string, name: string): string | undefined {
  const result = spawnSync(go, ['env', name], { encoding: 'utf8' });
  const value = result.status === 0 ? result.stdout.trim() : '';
  return value === '' ? undefined : value;
}

/** Where `go install` puts binaries: GOBIN, else each GOPATH entry's bin. */
function goBinDirs(go: string | undefined): string[] {
  const dirs: string[] = [];
  if (go !== undefined) {
    const gobin = goEnv(go, 'GOBIN');
    if (gobin !== undefined) dirs.push(gobin);
    const gopath = goEnv(go, 'GOPATH');
    if (gopath !== undefined) dirs.push(...gopath.split(delimiter).map((p) => join(p, 'bin')));
  }
  // Go's default GOPATH, for when go itself is not on PATH.
  if (process.env.HOME) dirs.push(join(process.env.HOME, 'go', 'bin'));
  return dirs;
}

function findSqlc(go: string | undefined): string | undefined {
  const onPath = findOnPath('sqlc');
  if (onPath !== undefined) return onPath;
  return goBinDirs(go)
    .map((dir) => join(dir, 'sqlc'))
    .find(isExecutable);
}

function fail(message: string): never {
  process.stderr.write(`sqlc: ${message}\n`);
  process.exit(1);
}

function ensureSqlc(): string {
  const go = findOnPath('go');
  const found = findSqlc(go);
  if (found !== undefined) return found;
  if (go === undefined) {
    fail(
      "sqlc not found on PATH or in Go's bin directory, and Go is not installed to build it.\n" +
        `Install Go (with cgo/gcc), then run: go install ${SQLC_MODULE}`,
    );
  }
  process.stderr.write(`sqlc: not found; installing ${SQLC_MODULE} with go install...\n`);
  const install = spawnSync(go, ['install', SQLC_MODULE], { stdio: 'inherit' });
  if (install.status !== 0) fail(`go install ${SQLC_MODULE} failed (it needs cgo and gcc)`);
  const installed = findSqlc(go);
  if (installed === undefined) fail(`go install succeeded but sqlc is not in ${goBinDirs(go).join(', ')}`);
  return installed;
}

function warnOnVersionMismatch(sqlc: string): void {
  const result = spawnSync(sqlc, ['version'], { encoding: 'utf8' });
  const version = (result.stdout ?? '').trim();
  if (version !== SQLC_VERSION) {
    process.stderr.write(
      `sqlc: warning: ${sqlc} is ${version || 'of unknown version'}, the project pins ${SQLC_VERSION}\n`,
    );
  }
}

function main(argv: string[]): number {
  const check = argv.includes('--check');
  const unknown = argv.filter((a) => a !== '--check');
  if (unknown.length > 0) fail(`unknown argument(s): ${unknown.join(' ')}\nusage: npm run sqlc [-- --check]`);

  const sqlc = ensureSqlc();
  warnOnVersionMismatch(sqlc);
  const command = check ? 'diff' : 'generate';
  const result = spawnSync(sqlc, [command], { cwd: repoRoot, stdio: 'inherit' });
  if (result.error) fail(`could not run ${sqlc}: ${result.error.message}`);
  if (result.status !== 0 && check) {
    process.stderr.write(
      'sqlc: generated code in src/db/sqlc is out of date; run `npm run sqlc` and commit the result\n',
    );
  }
  return result.status ?? 1;
}

process.exitCode = main(process.argv.slice(2));
