// What the real-Vault suite shares: one dev server per test file, the
// service as real processes against it, the commands docs/vault.md gives
// operators (run exactly as written), and the check that no token, secret id
// or secret value ever reaches the service's output.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { expect } from 'chai';
import { useTestDatabase } from '../support/postgres.ts';
import { type LogRecord, projectRoot, runMain, startPod, type TestProcess } from '../support/processes.ts';
import { VaultDevServer } from '../support/vault-dev-server.ts';

export const secretPath = 'secret/data/job-manager';
/** What a Vault token looks like (1.10 and later: hvs., hvb., hvr. and at least 20 more characters). */
export const vaultTokenPattern = /\bhv[sbr]\.[A-Za-z0-9_-]{20,}/;

/**
 * Mocha helper for a test file: a Vault dev server (started once), a database,
 * service processes started through `start`/`run` (stopped after each test),
 * and after each test a check that none of the values passed to `secret()`
 * appears in any service's output.
 */
export function useVaultSuite(options: { emptyVaultPerTest?: boolean } = {}) {
  const db = useTestDatabase();
  let server: VaultDevServer | undefined;
  const processes: TestProcess[] = [];
  const secrets = new Set<string>();

  before(async function () {
    this.timeout(120_000);
    server = await VaultDevServer.start();
  });
  after(async () => {
    await server?.stop();
  });
  if (options.emptyVaultPerTest) {
    beforeEach(async function () {
      if (this.currentTest !== this.test?.parent?.tests[0]) await vault().restart();
    });
  }
  afterEach(async () => {
    const stopped = processes.splice(0);
    await Promise.all(stopped.map((proc) => proc.stop('SIGTERM', 10_000)));
    secrets.add(vault().rootToken);
    secrets.add(vault().unsealKey);
    for (const proc of stopped) {
      const output = proc.output();
      for (const value of secrets) {
        if (value) expect(output.includes(value), `${proc.name} logged a secret value`).to.equal(false);
      }
      // Nor any Vault token, including the ones the service got from its own AppRole logins, which
      // the test never sees: Vault's service, batch and recovery tokens start hvs., hvb., hvr.
      expect(output, `${proc.name} logged a Vault token`).to.not.match(vaultTokenPattern);
    }
  });

  const vault = () => {
    if (!server) throw new Error('Vault dev server not started');
    return server;
  };

  /** The environment of a service on this Vault: re-read every second, JSON logs at debug. */
  const serviceEnv = (env: Record<string, string>): Record<string, string> => ({
    DATABASE_URL: db().url,
    VAULT_ADDR: vault().url,
    VAULT_REFRESH_SECONDS: '1',
    VAULT_START_TIMEOUT_MS: '5000',
    LOG_LEVEL: 'debug',
    HOME: process.env.HOME ?? '/root',
    ...env,
  });

  const secret = (value: string): string => {
    secrets.add(value);
    return value;
  };

  return {
    db,
    vault,
    /** Remembers values that must never appear in a service's output; returns the value. */
    secret,
    /**
     * (Re)writes the role auth/approle/role/job-manager (policy job-manager
     * alone, the TTLs given; AppRole must be enabled) and returns a new secret
     * id with its role id, as the service's environment.
     */
    async appRole(tokenTtl: string, tokenMaxTtl: string): Promise<Record<string, string>> {
      const role = 'auth/approle/role/job-manager';
      await vault().run([
        'write',
        role,
        'token_policies=job-manager',
        'token_no_default_policy=true',
        `token_ttl=${tokenTtl}`,
        `token_max_ttl=${tokenMaxTtl}`,
      ]);
      const roleId = (await vault().run(['read', '-field=role_id', `${role}/role-id`])).trim();
      const secretId = (await vault().run(['write', '-f', '-field=secret_id', `${role}/secret-id`])).trim();
      return { VAULT_ROLE_ID: roleId, VAULT_SECRET_ID: secret(secretId) };
    },
    /** A service process, resolved once it serves HTTP. */
    async start(name: string, env: Record<string, string>): Promise<TestProcess> {
      const pod = await startPod(name, serviceEnv(env), { timeoutMs: 60_000 });
      processes.push(pod);
      return pod;
    },
    /** A service process that may not come up (start-up failures): wait on `.exited`. */
    run(name: string, env: Record<string, string>): TestProcess {
      const proc = runMain({ INSTANCE_ID: name, ...serviceEnv(env) }, { name });
      processes.push(proc);
      return proc;
    },
  };
}

/** The `vault` state in the service's /health-check. */
export async function vaultHealth(pod: TestProcess): Promise<string> {
  const response = await fetch(`${pod.url}/health-check`);
  const body = (await response.json()) as { checks: Record<string, string> };
  return body.checks.vault ?? '';
}

/** job_manager_vault_refresh_failures_total{reason} as the service exports it. */
export async function vaultFailures(pod: TestProcess, reason: string): Promise<number> {
  const text = await (await fetch(`${pod.url}/metrics`)).text();
  const match = new RegExp(`^job_manager_vault_refresh_failures_total\\{reason="${reason}"\\} (\\d+)$`, 'm').exec(text);
  return match ? Number(match[1]) : Number.NaN;
}

/**
 * Resolves once `probe` holds (checked every 100 ms); rejects with `what`
 * (a function: evaluated at the failure, e.g. a process's latest output) after `timeoutMs`.
 */
export async function until(
  what: string | (() => string),
  probe: () => boolean | Promise<boolean>,
  timeoutMs = 30_000,
) {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) {
      throw new Error(`${typeof what === 'function' ? what() : what}: not within ${timeoutMs} ms`);
    }
    await sleep(100);
  }
}

/** Log lines whose msg is exactly `msg`, or starts with it when it ends in "…". */
export function lines(pod: TestProcess, msg: string): LogRecord[] {
  return pod.lines.filter((line) =>
    msg.endsWith('…') ? String(line.msg ?? '').startsWith(msg.slice(0, -1)) : line.msg === msg,
  );
}

/** Waits for the `count`-th line with this msg (see `lines`) and returns it. */
export async function nthLine(pod: TestProcess, msg: string, count: number, timeoutMs = 30_000): Promise<LogRecord> {
  await until(
    () => `${pod.name}: ${count} × "${msg}"; last output:\n${pod.tail(20)}`,
    () => lines(pod, msg).length >= count,
    timeoutMs,
  );
  return lines(pod, msg)[count - 1]!;
}

/** Waits for the first "Vault refresh failed; …" line of this `kind` (earlier ones of other kinds are passed over). */
export async function refreshFailure(pod: TestProcess, kind: string, timeoutMs = 30_000): Promise<LogRecord> {
  const failures = () => lines(pod, refreshFailed).filter((line) => line.kind === kind);
  await until(
    () => `${pod.name}: a refresh failure of kind ${kind}; last output:\n${pod.tail(20)}`,
    () => failures().length > 0,
    timeoutMs,
  );
  return failures()[0]!;
}

/** What the watcher logs (once per distinct reason) when a re-read fails. */
export const refreshFailed = 'Vault refresh failed; keeping the current configuration';

/**
 * The shell blocks of docs/vault.md that the suite runs, by name: each is the
 * fenced `sh` block right after a `<!-- test:vault runs: NAME -->` comment.
 */
export function documentedCommands(): Record<string, string> {
  const text = readFileSync(join(projectRoot, 'docs', 'vault.md'), 'utf8');
  const blocks: Record<string, string> = {};
  for (const match of text.matchAll(/<!-- test:vault runs: ([a-z-]+) -->\s*```sh\n([\s\S]*?)```/g)) {
    blocks[match[1]!] = match[2]!;
  }
  return blocks;
}

/** The policy file with the "read" capability taken away (a policy that no longer grants it). */
export function policyWithoutRead(): string {
  const policy = readFileSync(join(projectRoot, 'deploy', 'vault', 'job-manager-policy.hcl'), 'utf8');
  const withoutRead = policy.replace(/(path "secret\/data\/job-manager" \{\s*capabilities = )\["read"\]/, '$1["list"]');
  expect(withoutRead, 'the policy grants read on the secret').to.not.equal(policy);
  return withoutRead;
}
