import { existsSync } from 'node:fs';
import { createConnection } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { findFreePort } from '../../../src/db/embedded.ts';
import { launch, type TestProcess } from '../../support/processes.ts';

/** A redis-server of the suite's own on a free loopback port (never the machine's), or undefined when not installed. */
export class OwnRedis {
  readonly port: number;
  readonly #server: TestProcess;

  private constructor(port: number, server: TestProcess) {
    this.port = port;
    this.#server = server;
  }

  static async start(): Promise<OwnRedis | undefined> {
    const binary = ['/usr/bin/redis-server', '/usr/local/bin/redis-server'].find((path) => existsSync(path));
    if (!binary) return undefined;
    const port = await findFreePort();
    const server = launch(binary, {
      name: 'redis-server',
      args: ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      keepLines: 200,
    });
    const redis = new OwnRedis(port, server);
    const deadline = Date.now() + 10_000;
    while (!(await redis.#accepts())) {
      if (Date.now() > deadline || !server.alive) {
        server.killGroup();
        throw new Error(`redis-server did not start:\n${server.output()}`);
      }
      await sleep(50);
    }
    return redis;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async stop(): Promise<void> {
    await this.#server.stop('SIGTERM');
  }

  #accepts(): Promise<boolean> {
    return new Promise((resolve) => {
      const socket = createConnection({ port: this.port, host: '127.0.0.1' });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
  }
}
