import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Proxy as ToxiProxy, Toxiproxy } from 'toxiproxy-node-client';
import { findFreePort } from '../../../src/db/embedded.ts';
import { launch } from '../../support/processes.ts';

/**
 * Toxiproxy (github.com/Shopify/toxiproxy v2.12, `go install
 * github.com/Shopify/toxiproxy/v2/cmd/server@v2.12.0`) started by the suite on
 * a free loopback port and driven over its HTTP API. Undefined when the
 * server binary is not installed: the proxy scenarios are then skipped.
 */
export interface RunningToxiproxy {
  client: Toxiproxy;
  /** A proxy on a free loopback port forwarding to `upstream` (host:port); returns it and its listen address. */
  proxy(name: string, upstream: string): Promise<{ proxy: ToxiProxy; port: number }>;
  stop(): Promise<void>;
}

export function toxiproxyBinary(): string | undefined {
  const candidates = [
    process.env.TOXIPROXY_SERVER,
    join(process.env.GOPATH ?? join(homedir(), 'go'), 'bin', 'server'),
    join(homedir(), 'go', 'bin', 'server'),
    '/usr/local/bin/toxiproxy-server',
    '/usr/bin/toxiproxy-server',
  ].filter((candidate): candidate is string => Boolean(candidate));
  return candidates.find((candidate) => existsSync(candidate));
}

export async function startToxiproxy(): Promise<RunningToxiproxy | undefined> {
  const binary = toxiproxyBinary();
  if (!binary) return undefined;
  const port = await findFreePort();
  const server = launch(binary, {
    name: 'toxiproxy',
    args: ['-host', '127.0.0.1', '-port', String(port)],
    keepLines: 200,
  });
  const client = new Toxiproxy(`http://127.0.0.1:${port}`);
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      await client.getVersion();
      break;
    } catch (error) {
      if (Date.now() > deadline || !server.alive) {
        server.killGroup();
        throw new Error(`toxiproxy at ${binary} did not start: ${String(error)}\n${server.output()}`);
      }
      await sleep(100);
    }
  }
  return {
    client,
    async proxy(name, upstream) {
      const listenPort = await findFreePort();
      const proxy = await client.createProxy({ name, listen: `127.0.0.1:${listenPort}`, upstream });
      return { proxy, port: listenPort };
    },
    async stop() {
      await server.stop('SIGTERM');
    },
  };
}
