import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findFreePort } from '../../../src/db/embedded.ts';
import { launch, type TestProcess } from '../../support/processes.ts';
import { until } from './kit.ts';

export const haproxyBinary = '/usr/sbin/haproxy';

/**
 * Debian's HAProxy in TCP mode as the database endpoint the pods use, the
 * way a failover setup (Patroni, pg_auto_failover) puts one in front of its
 * servers: one backend with a server per PostgreSQL, exactly one of them in
 * service. `pointAt()` moves the endpoint through the runtime API on the
 * stats socket (`set server … state`), optionally cutting the sessions of the
 * servers it leaves (`shutdown sessions server`), as a proxy that marks a
 * server down with `on-marked-down shutdown-sessions` does.
 */
export class Haproxy {
  readonly port: number;
  readonly #dir: string;
  readonly #process: TestProcess;
  readonly #servers: string[];

  private constructor(port: number, dir: string, process: TestProcess, servers: string[]) {
    this.port = port;
    this.#dir = dir;
    this.#process = process;
    this.#servers = servers;
  }

  /** Starts HAProxy in front of `servers` (name → port on 127.0.0.1), `active` in service, the others in maintenance. */
  static async start(servers: Record<string, number>, active: string): Promise<Haproxy> {
    if (!existsSync(haproxyBinary)) throw new Error(`${haproxyBinary} not found (apt-get install haproxy)`);
    const dir = mkdtempSync(join(tmpdir(), 'jm-haproxy-'));
    const port = await findFreePort();
    const config = [
      'global',
      `  stats socket ${join(dir, 'admin.sock')} mode 600 level admin`,
      '  maxconn 4000',
      'defaults',
      '  mode tcp',
      '  timeout connect 2s',
      // Idle LISTEN and pooled connections must not be cut by the proxy.
      '  timeout client 1h',
      '  timeout server 1h',
      '  retries 1',
      'listen postgres',
      `  bind 127.0.0.1:${port}`,
      ...Object.entries(servers).map(
        ([name, serverPort]) => `  server ${name} 127.0.0.1:${serverPort}${name === active ? '' : ' disabled'}`,
      ),
      '',
    ].join('\n');
    writeFileSync(join(dir, 'haproxy.cfg'), config);
    const process = launch(haproxyBinary, { name: 'haproxy', args: ['-f', join(dir, 'haproxy.cfg'), '-db'] });
    const proxy = new Haproxy(port, dir, process, Object.keys(servers));
    await until('haproxy listening', async () => {
      if (!process.alive) throw new Error(`haproxy exited:\n${process.output()}`);
      return (await proxy.command('show info')).includes('Pid:');
    });
    return proxy;
  }

  /** Puts `name` in service and every other server in maintenance, cutting their sessions when `dropSessions`. */
  async pointAt(name: string, { dropSessions = false } = {}): Promise<void> {
    const others = this.#servers.filter((server) => server !== name);
    const commands = [
      ...others.map((server) => `set server postgres/${server} state maint`),
      ...(dropSessions ? others.map((server) => `shutdown sessions server postgres/${server}`) : []),
      `set server postgres/${name} state ready`,
    ];
    const answer = await this.command(commands.join('; '));
    if (answer.trim() !== '') throw new Error(`haproxy refused "${commands.join('; ')}": ${answer}`);
  }

  /** One runtime API command line on the stats socket; resolves with the answer ('' when the socket is not up). */
  command(line: string): Promise<string> {
    return new Promise((resolve) => {
      const socket = net.createConnection(join(this.#dir, 'admin.sock'));
      let answer = '';
      socket.setEncoding('utf8');
      socket.on('connect', () => socket.write(`${line}\n`));
      socket.on('data', (chunk: string) => {
        answer += chunk;
      });
      socket.on('error', () => resolve(''));
      socket.on('close', () => resolve(answer));
    });
  }

  async stop(): Promise<void> {
    await this.#process.stop('SIGTERM', 5_000);
    rmSync(this.#dir, { recursive: true, force: true });
  }
}
