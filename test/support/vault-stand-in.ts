// A stand-in for HashiCorp Vault that speaks the real HTTP API for the calls
// job-manager makes (KV v2 read, AppRole login, token renew-self and
// lookup-self), with switchable 403 and outages. Response bodies follow
// Vault's documented shapes; errors are {"errors": [...]} like Vault's.
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

interface TokenEntry {
  policies: string[];
  /** Lease in seconds; 0 = never expires (the root token). */
  ttlSeconds: number;
  expiresAt: number;
  maxExpiresAt: number;
  renewable: boolean;
}

export interface RecordedRequest {
  method: string;
  path: string;
  hadToken: boolean;
}

export type Outage = 'none' | 'closed' | 'sealed';

export class VaultStandIn {
  readonly rootToken = `hvs.root-${randomBytes(8).toString('hex')}`;
  readonly requests: RecordedRequest[] = [];
  /** Every read of a secret answers 403 (a policy without read on it). */
  forbidden = false;
  #server: Server;
  #sockets = new Set<Socket>();
  #port = 0;
  #outage: Outage = 'none';
  #tokens = new Map<string, TokenEntry>();
  #secrets = new Map<string, { data: Record<string, unknown>; version: number; created: string }>();
  #roles = new Map<string, { secretId: string; leaseSeconds: number; maxTtlSeconds: number }>();

  private constructor() {
    this.#server = this.#createServer();
    this.#tokens.set(this.rootToken, {
      policies: ['root'],
      ttlSeconds: 0,
      expiresAt: 0,
      maxExpiresAt: 0,
      renewable: false,
    });
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

  /** Enables an AppRole role (auth/approle/role/<name>) with one secret id; returns its credentials. */
  addAppRole(options: { leaseSeconds: number; maxTtlSeconds?: number }): { roleId: string; secretId: string } {
    const roleId = randomUUID();
    const secretId = randomUUID();
    this.#roles.set(roleId, {
      secretId,
      leaseSeconds: options.leaseSeconds,
      maxTtlSeconds: options.maxTtlSeconds ?? 86_400,
    });
    return { roleId, secretId };
  }

  /** Revokes every token but the root token (their next use answers 403). */
  revokeIssuedTokens(): void {
    for (const token of this.#tokens.keys()) if (token !== this.rootToken) this.#tokens.delete(token);
  }

  count(method: string, path: string): number {
    return this.requests.filter((request) => request.method === method && request.path === path).length;
  }

  /** 'closed': nothing listens (connection refused); 'sealed': every call answers 503. */
  async setOutage(outage: Outage): Promise<void> {
    if (outage === this.#outage) return;
    const wasClosed = this.#outage === 'closed';
    this.#outage = outage;
    if (outage === 'closed') await this.#close();
    else if (wasClosed) {
      this.#server = this.#createServer();
      await this.#listen(this.#port);
    }
  }

  async stop(): Promise<void> {
    if (this.#outage !== 'closed') await this.#close();
  }

  #createServer(): Server {
    const server = createServer((req, res) => {
      this.#handle(req, res).catch((error: unknown) => reply(res, 500, { errors: [String(error)] }));
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

  #close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
      for (const socket of this.#sockets) socket.destroy();
    });
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://vault');
    const path = url.pathname;
    const method = req.method ?? 'GET';
    const tokenHeader = req.headers['x-vault-token'];
    const token = typeof tokenHeader === 'string' ? tokenHeader : undefined;
    const body = await readJson(req);
    this.requests.push({ method, path, hadToken: Boolean(token) });

    if (this.#outage === 'sealed') return reply(res, 503, { errors: ['Vault is sealed'] });

    if (method === 'POST' && path === '/v1/auth/approle/login') {
      const role = this.#roles.get(String(body.role_id ?? ''));
      if (!role || role.secretId !== body.secret_id) return reply(res, 400, { errors: ['invalid role or secret ID'] });
      const clientToken = `hvs.${randomBytes(12).toString('hex')}`;
      const now = Date.now();
      this.#tokens.set(clientToken, {
        policies: ['default', 'job-manager'],
        ttlSeconds: role.leaseSeconds,
        expiresAt: now + role.leaseSeconds * 1_000,
        maxExpiresAt: now + role.maxTtlSeconds * 1_000,
        renewable: true,
      });
      return reply(res, 200, envelope({ auth: this.#auth(clientToken) }));
    }

    const entry = token ? this.#liveToken(token) : undefined;
    if (!token || !entry) return reply(res, 403, { errors: ['permission denied'] });

    if (method === 'POST' && path === '/v1/auth/token/renew-self') {
      if (!entry.renewable) return reply(res, 400, { errors: ['lease is not renewable'] });
      const increment = Number(body.increment ?? entry.ttlSeconds) * 1_000;
      entry.expiresAt = Math.min(Date.now() + increment, entry.maxExpiresAt);
      return reply(res, 200, envelope({ auth: this.#auth(token) }));
    }
    if (method === 'GET' && path === '/v1/auth/token/lookup-self') {
      const ttl = entry.expiresAt === 0 ? 0 : Math.max(0, Math.round((entry.expiresAt - Date.now()) / 1_000));
      return reply(
        res,
        200,
        envelope({
          data: {
            accessor: randomUUID(),
            creation_ttl: entry.ttlSeconds,
            display_name: entry.policies.includes('root') ? 'root' : 'approle',
            expire_time: entry.expiresAt === 0 ? null : new Date(entry.expiresAt).toISOString(),
            id: token,
            policies: entry.policies,
            renewable: entry.renewable,
            ttl,
            type: 'service',
          },
        }),
      );
    }
    if (method === 'GET' && path.startsWith('/v1/')) {
      const apiPath = path.slice('/v1/'.length);
      if (this.forbidden) return reply(res, 403, { errors: ['permission denied'] });
      const secret = this.#secrets.get(apiPath);
      if (!secret) return reply(res, 404, { errors: [] });
      return reply(
        res,
        200,
        envelope({
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
        }),
      );
    }
    return reply(res, 404, { errors: [] });
  }

  #liveToken(token: string): TokenEntry | undefined {
    const entry = this.#tokens.get(token);
    if (!entry) return undefined;
    if (entry.expiresAt !== 0 && entry.expiresAt <= Date.now()) {
      this.#tokens.delete(token);
      return undefined;
    }
    return entry;
  }

  #auth(token: string) {
    const entry = this.#tokens.get(token)!;
    return {
      client_token: token,
      accessor: randomUUID(),
      policies: entry.policies,
      token_policies: entry.policies,
      metadata: { role_name: 'job-manager' },
      lease_duration: Math.max(0, Math.round((entry.expiresAt - Date.now()) / 1_000)),
      renewable: entry.renewable,
      entity_id: randomUUID(),
      token_type: 'service',
      orphan: true,
      mfa_requirement: null,
      num_uses: 0,
    };
  }
}

function envelope(fields: { data?: unknown; auth?: unknown }) {
  return {
    request_id: randomUUID(),
    lease_id: '',
    renewable: false,
    lease_duration: 0,
    data: fields.data ?? null,
    wrap_info: null,
    warnings: null,
    auth: fields.auth ?? null,
    mount_type: '',
  };
}

function reply(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
  res.end(JSON.stringify(body));
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  if (chunks.length === 0) return {};
  try {
    const parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    return typeof parsed === 'object' && parsed !== null ? parsed : {};
  } catch {
    return {};
  }
}
