// A real HashiCorp Vault (the pinned build of scripts/build-vault.sh) as a
// dev server: in memory, unsealed, KV v2 mounted at secret/, on a free
// loopback port with a root token of its own. `npm run test:vault` starts one
// per test file. The `vault` CLI of the same binary drives it exactly as an
// operator would (policy write, kv put, token revoke, operator seal …).
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { findFreePort } from '../../src/db/embedded.ts';
import { launch, projectRoot, type TestProcess } from './processes.ts';

/** Where scripts/build-vault.sh puts the binary (VAULT_BINARY overrides it). */
export const vaultBinary =
  process.env.VAULT_BINARY ||
  join(process.env.JOB_MANAGER_CACHE || join(homedir(), '.cache', 'job-manager'), 'vault-1.21.0', 'vault');

/** The policy the service needs, as committed for operators. */
export const policyFile = join(projectRoot, 'deploy', 'vault', 'job-manager-policy.hcl');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class VaultDevServer {
  readonly port: number;
  readonly rootToken = `dev-root-${randomBytes(8).toString('hex')}`;
  /** The unseal key the dev server printed at its (latest) start. */
  unsealKey = '';
  #process: TestProcess | undefined;

  private constructor(port: number) {
    this.port = port;
  }

  /** Starts a dev server on a free port; resolves once it answers unsealed. */
  static async start(): Promise<VaultDevServer> {
    if (!existsSync(vaultBinary)) {
      throw new Error(`no Vault binary at ${vaultBinary}: run scripts/build-vault.sh (npm run test:vault does)`);
    }
    const server = new VaultDevServer(await freePortPair());
    await server.#launch();
    return server;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The dev server's own output (it holds the root token and unseal key: never grep the service's logs with it). */
  output(): string {
    return this.#process?.output() ?? '';
  }

  /**
   * Runs `vault <args>` against this server with the root token (or `token`),
   * from the repository root; `input` goes to stdin. Never throws.
   */
  cli(args: readonly string[], options: { token?: string; input?: string; env?: Record<string, string> } = {}) {
    return runVault(args, { VAULT_TOKEN: options.token ?? this.rootToken, ...options.env }, this.url, options.input);
  }

  /** `vault <args>`, rejecting with its stderr when it fails; resolves with stdout. */
  async run(args: readonly string[], options: { token?: string; input?: string } = {}): Promise<string> {
    const result = await this.cli(args, options);
    if (result.code !== 0) throw new Error(`vault ${args.join(' ')} failed (${result.code}): ${result.stderr}`);
    return result.stdout;
  }

  /** `sh -c <script>` with VAULT_ADDR, VAULT_TOKEN (root) and the vault binary first on PATH, from the repository root. */
  shell(script: string, env: Record<string, string> = {}): Promise<CliResult> {
    return runCommand('sh', ['-c', script], this.#env({ VAULT_TOKEN: this.rootToken, ...env }));
  }

  /** A token of its own (vault token create), e.g. `['-policy=job-manager', '-ttl=6s']`; returns it. */
  async createToken(args: readonly string[]): Promise<string> {
    return (await this.run(['token', 'create', '-field=token', ...args])).trim();
  }

  async seal(): Promise<void> {
    await this.run(['operator', 'seal']);
  }

  async unseal(): Promise<void> {
    await this.run(['operator', 'unseal', this.unsealKey]);
  }

  /** Stops the process and starts a new dev server on the same port with the same root token: it comes back empty. */
  async restart(): Promise<void> {
    await this.stop();
    await this.#launch();
  }

  async stop(): Promise<void> {
    await this.#process?.stop('SIGTERM', 10_000);
    this.#process = undefined;
  }

  async #launch(): Promise<void> {
    const proc = launch(vaultBinary, {
      name: `vault dev server :${this.port}`,
      args: [
        'server',
        '-dev',
        `-dev-root-token-id=${this.rootToken}`,
        `-dev-listen-address=127.0.0.1:${this.port}`,
        // Not written to ~/.vault-token: the tests always pass VAULT_TOKEN.
        '-dev-no-store-token',
      ],
      inheritEnv: false,
      env: { HOME: process.env.HOME ?? '/root', VAULT_ADDR: this.url },
    });
    this.#process = proc;
    const match = await proc.waitForOutput(/Unseal Key: (\S+)/, 60_000);
    this.unsealKey = match[1] ?? '';
    // Unsealed and KV v2 mounted at secret/ once a read of the mount's config answers.
    const deadline = Date.now() + 30_000;
    for (;;) {
      const probe = await this.cli(['read', '-format=json', 'secret/config']);
      if (probe.code === 0) return;
      if (Date.now() > deadline || !proc.alive) {
        throw new Error(`Vault dev server not ready: ${probe.stderr}\n${proc.tail(30)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  #env(extra: Record<string, string>): Record<string, string> {
    return {
      PATH: `${dirname(vaultBinary)}:${process.env.PATH ?? ''}`,
      HOME: process.env.HOME ?? '/root',
      VAULT_ADDR: this.url,
      ...extra,
    };
  }
}

/** A free port whose next one is free too: Vault also listens on port + 1 (its cluster address). */
async function freePortPair(): Promise<number> {
  for (;;) {
    const port = await findFreePort();
    const next = await new Promise<boolean>((resolve) => {
      const probe = createServer();
      probe.once('error', () => resolve(false));
      probe.listen(port + 1, '127.0.0.1', () => probe.close(() => resolve(true)));
    });
    if (next) return port;
  }
}

function runVault(
  args: readonly string[],
  env: Record<string, string>,
  addr: string,
  input?: string,
): Promise<CliResult> {
  return runCommand(
    vaultBinary,
    args,
    { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root', VAULT_ADDR: addr, ...env },
    input,
  );
}

function runCommand(
  command: string,
  args: readonly string[],
  env: Record<string, string>,
  input?: string,
): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = execFile(
      command,
      [...args],
      { cwd: projectRoot, env, timeout: 60_000, maxBuffer: 4 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        resolve({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
    if (input !== undefined) child.stdin?.end(input);
    else child.stdin?.end();
  });
}
