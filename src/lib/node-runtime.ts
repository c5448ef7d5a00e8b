// The Node runtime a pod runs on: V8 flags and Node's compile cache, applied by
// relaunching the process in place (process.execve: same pid, same stdin,
// stdout and stderr, no parent process left behind) when `node src/main.ts`
// was started without them. Why these and what they save: docs/production.md
// ("Memory and start-up").
import { accessSync, constants } from 'node:fs';
import { flushCompileCache, getCompileCacheDir } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * V8 flags a pod runs with unless the operator gave their own value of the
 * same flag (on the command line or in NODE_OPTIONS). `--max-semi-space-size`
 * is in MB: each of the young generation's two halves. V8's default lets each
 * grow to 32 MB on a 64-bit machine, and a pod keeps the pages once a burst
 * has filled them; at 4 MB a pod's idle resident set is about 20 MB smaller
 * and its peak about 30 MB smaller, at the same dispatch CPU within the noise
 * (docs/benchmarks.md, "Memory and cold start").
 */
export const podV8Flags: readonly string[] = ['--max-semi-space-size=4'];

/**
 * Environment a pod runs with unless the operator set the variable.
 * MALLOC_ARENA_MAX (glibc; other C libraries ignore it): at most 2 malloc
 * arenas instead of up to 8 per core, one per thread that allocates (V8's
 * compiler and GC threads, libuv's pool); fewer half-empty arenas kept
 * resident, about 5 MB less at idle and at peak (docs/benchmarks.md).
 */
export const podEnvironment: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '2' };

/**
 * Marks a relaunched process (its value: how many relaunches happened), so a
 * process relaunches at most twice whatever the runtime does with the flags.
 */
export const relaunchMarker = 'JOB_MANAGER_RELAUNCHES';

/** The facts about this process a relaunch is decided from. */
export interface RuntimeState {
  execPath: string;
  /** Node and V8 flags of the command line (process.execArgv). */
  execArgv: readonly string[];
  /** process.argv: [node, script, ...arguments]. */
  argv: readonly string[];
  env: Readonly<Record<string, string | undefined>>;
  /** Where Node's compile cache is, or undefined when it is off (module.getCompileCacheDir()). */
  compileCacheDir: string | undefined;
}

export interface Relaunch {
  /** The new process's argv, the executable first (what process.execve takes). */
  args: string[];
  env: Record<string, string>;
}

/**
 * Before the service's modules load: the relaunch that gives this process the
 * pod's V8 flags, environment and compile cache, or undefined when it has them, when
 * the operator switched the cache off (NODE_DISABLE_COMPILE_CACHE), or when it
 * was relaunched already. The cache goes where NODE_COMPILE_CACHE says, else
 * where Node's own `module.enableCompileCache()` puts it (the temporary
 * folder's `node-compile-cache`).
 */
export function relaunchBeforeLoad(state: RuntimeState): Relaunch | undefined {
  if (relaunches(state.env) > 0) return undefined;
  const missingFlags = podV8Flags.filter((flag) => !flagGiven(state, flag));
  const cacheMissing = state.compileCacheDir === undefined && !state.env.NODE_DISABLE_COMPILE_CACHE;
  const missingEnv = Object.entries(podEnvironment).filter(([name]) => state.env[name] === undefined);
  if (missingFlags.length === 0 && !cacheMissing && missingEnv.length === 0) return undefined;
  const env = { ...definedOnly(state.env), ...Object.fromEntries(missingEnv) };
  if (cacheMissing) env.NODE_COMPILE_CACHE ||= join(tmpdir(), 'node-compile-cache');
  env[relaunchMarker] = '1';
  return { args: [state.execPath, ...missingFlags, ...state.execArgv, ...state.argv.slice(1)], env };
}

/**
 * After the service's modules have loaded: when some of them missed the
 * compile cache (a first start, or sources that changed), Node loaded its
 * TypeScript stripper (amaro, about 20 MB resident for the life of the
 * process). The cache now holds them; the relaunch to run without the
 * stripper, or undefined (a warm start, no cache, a cache folder this process
 * cannot write, or a second relaunch already done).
 * @param stripperLoaded Node's type stripper was loaded in this process (typeStripperLoaded())
 */
export function relaunchAfterLoad(state: RuntimeState, stripperLoaded: boolean): Relaunch | undefined {
  if (!stripperLoaded || state.compileCacheDir === undefined || relaunches(state.env) >= 2) return undefined;
  if (!writable(state.compileCacheDir)) return undefined;
  const env = definedOnly(state.env);
  env[relaunchMarker] = String(relaunches(state.env) + 1);
  return { args: [state.execPath, ...state.execArgv, ...state.argv.slice(1)], env };
}

/** This process, as relaunchBeforeLoad and relaunchAfterLoad read it; `env` is its environment (copied). */
export function currentRuntime(env: Readonly<Record<string, string | undefined>>): RuntimeState {
  return {
    execPath: process.execPath,
    execArgv: process.execArgv,
    argv: process.argv,
    env: { ...env },
    compileCacheDir: getCompileCacheDir(),
  };
}

/** Node has loaded its TypeScript stripper (amaro) in this process. */
export function typeStripperLoaded(): boolean {
  const loaded = (process as { moduleLoadList?: string[] }).moduleLoadList ?? [];
  return loaded.some((name) => name.includes('internal/deps/amaro/'));
}

/**
 * Replaces this process with `relaunch` (same pid); returns only when the
 * platform cannot (no process.execve) or the exec failed, and then this
 * process simply goes on as it is. The compile cache is written first.
 */
export function execRelaunch(relaunch: Relaunch | undefined): void {
  if (!relaunch || typeof process.execve !== 'function') return;
  flushCompileCache();
  try {
    process.execve(relaunch.args[0]!, relaunch.args, relaunch.env);
  } catch (error) {
    console.error(`could not relaunch with the pod's runtime flags, going on without: ${(error as Error).message}`);
  }
}

/** Drops the relaunch marker from this process's environment, so nothing it starts inherits it. */
export function forgetRelaunchMarker(env: Record<string, string | undefined>): void {
  delete env[relaunchMarker];
}

function relaunches(env: RuntimeState['env']): number {
  return Number(env[relaunchMarker] ?? 0) || 0;
}

/** `--name=value` or `--name value` of `flag` (by name) on the command line or in NODE_OPTIONS; `_` and `-` alike. */
function flagGiven(state: RuntimeState, flag: string): boolean {
  const name = normalize(flag.split('=')[0]!);
  const given = [...state.execArgv, ...(state.env.NODE_OPTIONS ?? '').split(/\s+/)];
  return given.some((arg) => normalize(arg.split('=')[0]!) === name);
}

function normalize(flag: string): string {
  return flag.replaceAll('_', '-');
}

function definedOnly(env: RuntimeState['env']): Record<string, string> {
  const copy: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) if (value !== undefined) copy[key] = value;
  return copy;
}

function writable(dir: string): boolean {
  try {
    accessSync(dir, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}
