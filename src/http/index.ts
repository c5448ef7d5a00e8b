import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Config, ConfigError } from '../config/config.ts';
import type { LiveSettings } from '../config/live-config.ts';
import { isLoopbackHost, listenHost } from '../config/network.ts';
import { type AppDependencies, createApp } from './app.ts';
import { createHttpServer } from './server.ts';
import { loadApiSpec } from './spec-routes.ts';

/**
 * The HTTP component: the API (openapi.yaml, read once, and the route table)
 * served on the listen address, and the rule that keeps it from being opened
 * to the network: a live change that empties the API keys while the service
 * listens beyond loopback is refused. It reads the API keys and the intake
 * rate limit from `settings.current` per request; where it listens (port,
 * host) and `trustProxy` are taken at start.
 */
export interface HttpServer {
  /** The address it listens on (HOST, else 127.0.0.1 without API keys and 0.0.0.0 with them). */
  host: string;
  /** The TCP port it listens on (PORT, or the one the system chose for PORT=0). */
  port: number;
  /**
   * Stops accepting connections; requests in flight get until a fifth of the
   * time left before `deadline` (epoch ms), at most 5 s, then their
   * connections are closed. Never rejects.
   */
  close(deadline: number): Promise<void>;
}

/**
 * Starts listening and registers the API keys guard on `settings`. Logs the
 * 'no API_KEYS' warning when the API runs without keys (before it returns, so
 * before the service says it is up).
 * @throws Error from `listen` (e.g. EADDRINUSE), or when openapi.yaml and the route table disagree
 */
export async function startHttpServer(settings: LiveSettings, deps: AppDependencies): Promise<HttpServer> {
  const config = settings.current;
  const host = listenHost(config);
  const app = createApp(settings, loadApiSpec(), deps);
  const server = await listen(createHttpServer(app, deps.logger), config.port, host);
  const port = (server.address() as AddressInfo).port;
  settings.addGuard((next) => refuseOpenToNetwork(next, host));
  if (config.apiKeys.length === 0) {
    const reach = isLoopbackHost(host)
      ? `listening on ${host}:${port} only`
      : `listening on ${host}:${port}, open to the network without a key`;
    deps.logger.warn(
      { host, port },
      `no API_KEYS: the API needs no key; ${reach}${config.allowUnauthenticated ? ' (ALLOW_UNAUTHENTICATED=true)' : ''}`,
    );
  }
  return { host, port, close: (deadline) => closeServer(server, deadline) };
}

/**
 * The guard: emptying the API keys while listening on `host`, not a loopback
 * address, would open the API to the network, unless unauthenticated access
 * is allowed on purpose. @throws ConfigError naming API_KEYS
 */
function refuseOpenToNetwork(next: Config, host: string): void {
  if (next.apiKeys.length === 0 && !next.allowUnauthenticated && !isLoopbackHost(host)) {
    throw new ConfigError(
      'API_KEYS',
      `cannot be emptied while the service listens on ${host}, which is not a loopback address (restart with HOST=127.0.0.1, or set ALLOW_UNAUTHENTICATED=true)`,
    );
  }
}

function listen(server: Server, port: number, host: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    server.keepAliveTimeout = 65_000;
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

/** Stops accepting; requests in flight get until a fifth of the time left (at most 5 s), then their connections close. */
function closeServer(server: Server, deadline: number): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
    const graceMs = Math.min(5_000, Math.max(0, (deadline - Date.now()) / 5));
    setTimeout(() => {
      server.closeAllConnections();
      resolve();
    }, graceMs).unref();
  });
}
