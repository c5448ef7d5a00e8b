/**
 * A webhook sink: a stand-in for the SMS provider that implements the
 * outbound webhook contract (docs/api.md, "The webhook call"), for local runs, tests, benchmarks and
 * docker compose.
 *
 *   POST <any path>   {"to", "content"} with an Idempotency-Key header
 *                     -> 202 {"message": "Accepted", "messageId": "<uuid>"}
 *                     The same key always gets the same messageId back.
 *   GET /received     what arrived (see ReceivedReport)
 *   DELETE /received  forget it
 *   GET /health       200 {"status": "ok"}
 *
 * Rejections, in the order they are checked: 401 wrong or missing auth header
 * (when one is configured), 413 body over the cap, 400 bad JSON, bad fields or
 * no Idempotency-Key, then the forced status code, then 503 for the injected
 * failure rate. Every POST is recorded with the status it was answered with.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/** What the sink does with deliveries; can be changed while it runs. */
export interface SinkBehaviour {
  /** Delay before every reply to a POST. */
  latencyMs: number;
  /** Fraction (0..1) of otherwise valid deliveries answered 503. */
  failureRate: number;
  /** Answer every valid delivery with this status (a 2xx still carries a messageId). */
  statusCode: number | undefined;
  /** Sent as Retry-After (seconds) with a forced 429 or 503; unset: no Retry-After. */
  retryAfterSeconds: number | undefined;
  /** Deliveries served at once; one more is answered 503 at once, without Retry-After. Unset: no cap. */
  maxConcurrent: number | undefined;
}

export interface SinkOptions extends Partial<SinkBehaviour> {
  /** Default 0: a free port. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Header that must carry `authValue`; unset: no auth check. */
  authHeader?: string;
  authValue?: string;
  /** Default 1 MiB; larger bodies get 413. */
  maxBodyBytes?: number;
  /** Source of randomness for the failure rate; injectable for tests. */
  random?: () => number;
  /** Called for every recorded delivery, e.g. to log it. */
  onDelivery?: (item: ReceivedItem) => void;
}

export interface ReceivedItem {
  idempotencyKey: string | null;
  to: string | null;
  content: string | null;
  receivedAt: string;
  /** The status the sink answered with. */
  status: number;
  /** The messageId answered, for accepted deliveries. */
  messageId: string | null;
  /** The Standard Webhooks headers, when the delivery was signed (WEBHOOK_SIGNING_SECRET). */
  webhook: { id: string; timestamp: string; signature: string } | null;
  /** The raw request body as received (what a signature covers). */
  body: string | null;
  /** The W3C `traceparent` header of the request (every delivery attempt carries one). */
  traceparent: string | null;
}

export interface ReceivedReport {
  /** Every POST recorded, accepted or not. */
  total: number;
  /** POSTs answered with a 2xx. */
  accepted: number;
  /** Distinct Idempotency-Keys among the accepted. */
  unique: number;
  /** Keys accepted more than once: what a real provider would have sent twice. */
  duplicates: string[];
  items: ReceivedItem[];
}

export interface RunningSink {
  /** Base URL without a trailing slash, e.g. http://127.0.0.1:3999 (127.0.0.1 when bound to all interfaces) */
  url: string;
  /** The address and port actually bound, e.g. `0.0.0.0:3999` or `[::1]:3999`. */
  boundTo: string;
  port: number;
  received(): ReceivedReport;
  clear(): void;
  configure(change: Partial<SinkBehaviour>): void;
  close(): Promise<void>;
}

interface Reply {
  status: number;
  body: Record<string, string>;
  messageId?: string;
  headers?: Record<string, string>;
}

const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

export async function startSink(options: SinkOptions = {}): Promise<RunningSink> {
  if (Boolean(options.authHeader) !== Boolean(options.authValue)) {
    throw new Error('sink auth header name and value must be set together');
  }
  const behaviour: SinkBehaviour = {
    latencyMs: options.latencyMs ?? 0,
    failureRate: options.failureRate ?? 0,
    statusCode: options.statusCode,
    retryAfterSeconds: options.retryAfterSeconds,
    maxConcurrent: options.maxConcurrent,
  };
  /** Deliveries being served now (waiting out latencyMs), for maxConcurrent. */
  let serving = 0;
  const authHeader = options.authHeader?.toLowerCase();
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const random = options.random ?? Math.random;
  const record = new DeliveryRecord();

  /** `message` is undefined when the body was over the size cap. */
  function decide(request: IncomingMessage, message: ParsedBody | undefined): Reply {
    if (authHeader && request.headers[authHeader] !== options.authValue) {
      return { status: 401, body: { message: `missing or wrong ${authHeader} header` } };
    }
    if (message === undefined) return { status: 413, body: { message: `body larger than ${maxBodyBytes} bytes` } };
    if ('invalid' in message) return { status: 400, body: { message: message.invalid } };
    const key = idempotencyKeyOf(request);
    if (key === null) return { status: 400, body: { message: 'missing Idempotency-Key header' } };
    const forced = behaviour.statusCode;
    if (forced !== undefined && (forced < 200 || forced > 299)) {
      const retryAfter = behaviour.retryAfterSeconds;
      const headers: Record<string, string> =
        retryAfter !== undefined && (forced === 429 || forced === 503) ? { 'retry-after': String(retryAfter) } : {};
      return { status: forced, body: { message: `forced status ${forced}` }, headers };
    }
    if (random() < behaviour.failureRate) return { status: 503, body: { message: 'injected failure' } };
    if (behaviour.maxConcurrent !== undefined && serving >= behaviour.maxConcurrent) {
      return { status: 503, body: { message: `more than ${behaviour.maxConcurrent} at once` } };
    }
    const messageId = record.messageIdFor(key);
    return { status: forced ?? 202, body: { message: 'Accepted', messageId }, messageId };
  }

  async function handleDelivery(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const body = await readBody(request, maxBodyBytes);
    const receivedAt = new Date().toISOString();
    const message = body === undefined ? undefined : parseMessage(body);
    const reply = decide(request, message);
    const valid = message !== undefined && !('invalid' in message);
    const item: ReceivedItem = {
      idempotencyKey: idempotencyKeyOf(request),
      to: valid ? message.to : null,
      content: valid ? message.content : null,
      receivedAt,
      status: reply.status,
      messageId: reply.messageId ?? null,
      webhook: webhookHeadersOf(request),
      body: body === undefined ? null : body.toString('utf8'),
      traceparent: typeof request.headers.traceparent === 'string' ? request.headers.traceparent : null,
    };
    record.add(item);
    options.onDelivery?.(item);
    const served = reply.messageId !== undefined;
    if (served) serving += 1;
    try {
      if (behaviour.latencyMs > 0 && (served || behaviour.maxConcurrent === undefined))
        await sleep(behaviour.latencyMs);
    } finally {
      if (served) serving -= 1;
    }
    sendJson(response, reply.status, reply.body, reply.headers);
  }

  function handle(request: IncomingMessage, response: ServerResponse): Promise<void> | void {
    const path = (request.url ?? '/').split('?')[0];
    if (path === '/received') {
      if (request.method === 'GET') return sendJson(response, 200, record.report());
      if (request.method === 'DELETE') {
        const cleared = record.clear();
        return sendJson(response, 200, { cleared });
      }
      return sendJson(response, 405, { message: 'GET or DELETE /received' });
    }
    if (path === '/health' && request.method === 'GET') return sendJson(response, 200, { status: 'ok' });
    if (request.method !== 'POST') return sendJson(response, 405, { message: 'POST a message to any path' });
    return handleDelivery(request, response);
  }

  const server = createServer((request, response) => {
    Promise.resolve(handle(request, response)).catch((error: unknown) => {
      if (!response.headersSent) sendJson(response, 500, { message: String(error) });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const address = server.address() as AddressInfo;
  return {
    url: `http://${displayHost(address.address)}:${address.port}`,
    boundTo: `${bracketed(address.address)}:${address.port}`,
    port: address.port,
    received: () => record.report(),
    clear: () => void record.clear(),
    configure: (change) => Object.assign(behaviour, change),
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}

/** Everything the sink was sent, and the messageId given to each Idempotency-Key. */
class DeliveryRecord {
  private items: ReceivedItem[] = [];
  private messageIds = new Map<string, string>();

  add(item: ReceivedItem): void {
    this.items.push(item);
  }

  messageIdFor(key: string): string {
    let id = this.messageIds.get(key);
    if (id === undefined) {
      id = randomUUID();
      this.messageIds.set(key, id);
    }
    return id;
  }

  clear(): number {
    const count = this.items.length;
    this.items = [];
    this.messageIds.clear();
    return count;
  }

  report(): ReceivedReport {
    const acceptedPerKey = new Map<string, number>();
    let accepted = 0;
    for (const item of this.items) {
      if (item.status < 200 || item.status > 299) continue;
      accepted += 1;
      if (item.idempotencyKey !== null) {
        acceptedPerKey.set(item.idempotencyKey, (acceptedPerKey.get(item.idempotencyKey) ?? 0) + 1);
      }
    }
    const duplicates = [...acceptedPerKey].filter(([, count]) => count > 1).map(([key]) => key);
    return { total: this.items.length, accepted, unique: acceptedPerKey.size, duplicates, items: [...this.items] };
  }
}

type ParsedBody = { to: string; content: string } | { invalid: string };

function parseMessage(body: Buffer): ParsedBody {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    return { invalid: 'body is not valid JSON' };
  }
  const { to, content } = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as Record<string, unknown>;
  if (typeof to !== 'string' || to === '') return { invalid: 'body needs "to": a non-empty string' };
  if (typeof content !== 'string') return { invalid: 'body needs "content": a string' };
  return { to, content };
}

function webhookHeadersOf(request: IncomingMessage): ReceivedItem['webhook'] {
  const { 'webhook-id': id, 'webhook-timestamp': timestamp, 'webhook-signature': signature } = request.headers;
  if (typeof id !== 'string' || typeof timestamp !== 'string' || typeof signature !== 'string') return null;
  return { id, timestamp, signature };
}

function idempotencyKeyOf(request: IncomingMessage): string | null {
  const key = request.headers['idempotency-key'];
  return typeof key === 'string' && key !== '' ? key : null;
}

/** The whole body, or undefined when it is larger than `maxBytes` (the rest is drained and dropped). */
async function readBody(request: IncomingMessage, maxBytes: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size <= maxBytes) chunks.push(chunk);
  }
  return size > maxBytes ? undefined : Buffer.concat(chunks);
}

function sendJson(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  response.writeHead(status, {
    ...headers,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  response.end(text);
}

function displayHost(address: string): string {
  if (address === '0.0.0.0' || address === '::') return '127.0.0.1';
  return bracketed(address);
}

function bracketed(address: string): string {
  return address.includes(':') ? `[${address}]` : address;
}
