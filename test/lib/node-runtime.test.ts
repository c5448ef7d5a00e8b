// A pod's Node runtime: `node src/main.ts` relaunches itself in place (same
// pid) with the pod's V8 flags and Node's compile cache, so that a running pod
// holds neither V8's large default young generation nor the TypeScript
// stripper; and what a pod does not use (node-vault without VAULT_ADDR,
// pino-pretty with JSON logs, pino-loki without LOKI_URL, the OpenTelemetry
// SDK without an endpoint) is never loaded.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { expect } from 'chai';
import {
  podEnvironment,
  podV8Flags,
  type RuntimeState,
  relaunchAfterLoad,
  relaunchBeforeLoad,
  relaunchMarker,
} from '../../src/lib/node-runtime.ts';
import { useTestDatabase } from '../support/postgres.ts';
import { startPod } from '../support/processes.ts';

const plain: RuntimeState = {
  execPath: '/usr/bin/node',
  execArgv: [],
  argv: ['/usr/bin/node', '/app/src/main.ts'],
  env: { PATH: '/usr/bin' },
  compileCacheDir: undefined,
};

describe('the pod runtime: when to relaunch', () => {
  it('relaunches a plain `node src/main.ts` with the pod flags and the compile cache, marked once', () => {
    const relaunch = relaunchBeforeLoad({ ...plain, execArgv: ['--inspect=0'], argv: [...plain.argv, 'extra'] });
    expect(relaunch?.args).to.deep.equal(['/usr/bin/node', ...podV8Flags, '--inspect=0', '/app/src/main.ts', 'extra']);
    expect(relaunch?.env).to.include({ PATH: '/usr/bin', ...podEnvironment, [relaunchMarker]: '1' });
    expect(relaunch?.env.NODE_COMPILE_CACHE).to.equal(join(tmpdir(), 'node-compile-cache'));
  });

  it("keeps the operator's own value of a flag (command line or NODE_OPTIONS, - or _) and own cache folder", () => {
    const own = relaunchBeforeLoad({
      ...plain,
      env: { NODE_OPTIONS: '--max_semi_space_size=16', NODE_COMPILE_CACHE: '/var/cache/node', MALLOC_ARENA_MAX: '8' },
    });
    expect(own?.args).to.deep.equal(['/usr/bin/node', '/app/src/main.ts']);
    expect(own?.env).to.include({ NODE_COMPILE_CACHE: '/var/cache/node', MALLOC_ARENA_MAX: '8' });
    expect(relaunchBeforeLoad({ ...plain, execArgv: ['--max-semi-space-size', '16'] })?.args).to.deep.equal([
      '/usr/bin/node',
      '--max-semi-space-size',
      '16',
      '/app/src/main.ts',
    ]);
  });

  it('does not relaunch with the flags and the cache in place, with the cache switched off, or a second time', () => {
    const flags = { ...plain, execArgv: [...podV8Flags], env: { ...podEnvironment } };
    expect(relaunchBeforeLoad({ ...flags, compileCacheDir: '/tmp/cache' })).to.equal(undefined);
    expect(relaunchBeforeLoad({ ...flags, env: { ...podEnvironment, NODE_DISABLE_COMPILE_CACHE: '1' } })).to.equal(
      undefined,
    );
    expect(relaunchBeforeLoad({ ...flags, compileCacheDir: '/tmp/cache', env: {} })?.env).to.include(podEnvironment);
    expect(relaunchBeforeLoad({ ...plain, env: { [relaunchMarker]: '1' } })).to.equal(undefined);
  });

  it('relaunches after loading only when the TypeScript stripper was needed and the cache can keep its work', async () => {
    const cache = await mkdtemp(join(tmpdir(), 'jm-cache-'));
    try {
      const warmed = { ...plain, compileCacheDir: cache, env: { [relaunchMarker]: '1' } };
      expect(relaunchAfterLoad(warmed, true)?.env[relaunchMarker]).to.equal('2');
      expect(relaunchAfterLoad(warmed, false)).to.equal(undefined);
      expect(relaunchAfterLoad({ ...warmed, env: { [relaunchMarker]: '2' } }, true)).to.equal(undefined);
      expect(relaunchAfterLoad({ ...warmed, compileCacheDir: undefined }, true)).to.equal(undefined);
      expect(relaunchAfterLoad({ ...warmed, compileCacheDir: join(cache, 'missing') }, true)).to.equal(undefined);
    } finally {
      await rm(cache, { recursive: true, force: true });
    }
  });
});

/**
 * Loaded by the pod through NODE_OPTIONS (so by every process of the relaunch
 * chain): sees every import and require, and at exit prints on stderr one
 * JSON line with the pid, the V8 flags, whether Node's TypeScript stripper is
 * loaded, and the packages resolved.
 */
const probe = `
import { registerHooks } from 'node:module';
import { writeSync } from 'node:fs';
const packages = new Set();
registerHooks({
  resolve(specifier, context, next) {
    const result = next(specifier, context);
    const at = result.url.lastIndexOf('/node_modules/');
    if (at >= 0) {
      const parts = result.url.slice(at + 14).split('/');
      packages.add(parts[0].startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]);
    }
    return result;
  },
});
process.on('exit', () => {
  const stripper = process.moduleLoadList.some((name) => name.includes('internal/deps/amaro/'));
  writeSync(2, JSON.stringify({ probe: 'runtime', pid: process.pid, execArgv: process.execArgv, stripper, packages: [...packages] }) + '\\n');
});
`;

describe('a pod started as `node src/main.ts`', function () {
  // Condition waits only; the bound is for a busy machine (a cold compile cache loads the service twice).
  this.timeout(180_000);
  const db = useTestDatabase();
  let folder: string;
  before(async () => {
    folder = await mkdtemp(join(tmpdir(), 'jm-runtime-'));
    await writeFile(join(folder, 'probe.mjs'), probe);
  });
  after(() => rm(folder, { recursive: true, force: true }));

  it('runs as the same pid with the pod flags and environment and no type stripper, even on a cold compile cache', async () => {
    const pod = await startPod('lean', {
      DATABASE_URL: db().url,
      NODE_COMPILE_CACHE: join(folder, 'cache'),
      NODE_OPTIONS: `--import ${pathToFileURL(join(folder, 'probe.mjs')).href}`,
    });
    const commandLine = (await readFile(`/proc/${pod.pid}/cmdline`, 'utf8')).split('\0');
    const environment = (await readFile(`/proc/${pod.pid}/environ`, 'utf8')).split('\0');
    await pod.stop('SIGTERM');
    const seen = pod.lines.find((line) => line.probe === 'runtime');
    expect(seen, pod.tail()).to.not.equal(undefined);
    expect(seen?.pid).to.equal(pod.pid);
    expect(commandLine).to.include.members([...podV8Flags]);
    expect(environment).to.include.members(Object.entries(podEnvironment).map(([name, value]) => `${name}=${value}`));
    expect(seen?.execArgv).to.include.members([...podV8Flags]);
    expect(seen?.stripper, 'the TypeScript stripper was loaded').to.equal(false);
    expect(seen?.packages).to.include.members(['pg', 'pino', 'express']);
    const unused = ['node-vault', 'pino-pretty', 'pino-loki', 'redis', '@opentelemetry/sdk-trace-base'];
    expect(seen?.packages.filter((name: string) => unused.includes(name))).to.deep.equal([]);
  });
});
