// A stand-in for HashiCorp Vault for `npm test`, which must pass on a machine
// without the Vault binary: it answers the KV v2 read the service makes at
// start and on each refresh (with Vault's response shape, 403 without the
// root token, 404 for a secret never written) and can stop listening.
// Everything else (AppRole, renewal, revocation, policies, seal, deleted
// versions) is tested against a real Vault in test/vault/ (npm run test:vault).
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface RecordedRequest {
  method: string;
  path: string;
  hadToken: boolean;
}

export class VaultStandIn {
  readonly rootToken = `hvs.root-${randomBytes(8).toString('hex')}`;
  readonly requests: RecordedRequest[] = [];
  #server: Server;
  #sockets = new Set<Socket>();
  #port = 0;
  #closed = false;
  #secrets = new Map<string, { data: Record<string, unknown>; version: number; created: string }>();

  private constructor() {
    this.#server = this.#createServer();
  }

  static async start(): Promise<VaultStandIn> {
    const standIn = new VaultStandIn();
    await standIn.#listen(0);
    return standIn;
  }

  get url(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  /** Writes a KV v2 secret, e.g. `setSecret('secret/data/job-manager', {...})` (a new version). */
  setSecret(apiPath: string, data: Record<string, unknown>): void {
    const previous = this.#secrets.get(apiPath);
    this.#secrets.set(apiPath, {
      data: { ...data },
      version: (previous?.version ?? 0) + 1,
      created: new Date().toISOString(),
    });
  }

  /** Stops listening: every call is then refused (ECONNREFUSED). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      for (const socket of this.#sockets) socket.destroy();
    });
  }

  async stop(): Promise<void> {
    await this.close();
  }

  #createServer(): Server {
    const server = createServer((req, res) => {
      this.#handle(req, res);
    });
    server.on('connection', (socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
    });
    return server;
  }

  #listen(port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, '127.0.0.1', () => {
        this.#port = (this.#server.address() as AddressInfo).port;
        resolve();
      });
    });
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    req.resume(); // no request body matters here
    const path = new URL(req.url ?? '/', 'http://vault').pathname;
    const method = req.method ?? 'GET';
    const token = req.headers['x-vault-token'];
    this.requests.push({ method, path, hadToken: typeof token === 'string' && token !== '' });
    const secret = method === 'GET' && path.startsWith('/v1/') ? this.#secrets.get(path.slice(4)) : undefined;
    if (token !== this.rootToken) reply(res, 403, { errors: ['permission denied'] });
    else if (!secret) reply(res, 404, { errors: [] });
    else
      reply(res, 200, {
        request_id: randomUUID(),
        lease_id: '',
        renewable: false,
        lease_duration: 0,
        data: {
          data: secret.data,
          metadata: {
            created_time: secret.created,
            custom_metadata: null,
            deletion_time: '',
            destroyed: false,
            version: secret.version,
          },
        },
        wrap_info: null,
        warnings: null,
        auth: null,
        mount_type: 'kv',
      });
  }
}

function reply(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
  res.end(JSON.stringify(body));
}
