/**
 * The webhook client: POSTs one message to the configured webhook and
 * classifies the answer (the webhook contract docs/api.md describes); and the
 * dry-run client used without WEBHOOK_URL.
 *
 * - sent:      2xx with a JSON body holding a non-empty string `messageId`
 * - transient: network error, timeout, 408, 429, 5xx (worth retrying; the
 *              server's Retry-After is passed on)
 * - permanent: any other status, or a 2xx without a usable `messageId`
 *
 * Error strings are short, name the HTTP status when there is one, and never
 * contain a configured secret (the auth value, the signing secrets, this
 * request's signature). Every result also carries what the delivery history
 * keeps of the attempt: the error in short (`timeout`, `connection refused`,
 * `HTTP 503`) and the first 1,024 characters of the response body, secrets
 * redacted. Deciding what to do with a result (retry, give up) is backoff.ts's job.
 */
import { randomUUID } from 'node:crypto';
import { Agent, type Dispatcher } from 'undici';
import type { WebhookSigner } from './signing.ts';

export interface OutboundMessage {
  id: string;
  to: string;
  content: string;
  /** The W3C `traceparent` header of this attempt (the delivery loop always sets it). */
  traceparent?: string;
}

/** What the delivery history keeps of an attempt besides its outcome (see message_attempts). */
export interface AttemptDetail {
  /** The first RESPONSE_EXCERPT_CHARS characters of the response body, secrets redacted; absent without a body. */
  responseExcerpt?: string;
  /** The error in short, without the body: `timeout`, `connection refused`, `HTTP 503`; absent: `error` itself. */
  attemptError?: string;
}

export type DeliveryResult = AttemptDetail &
  (
    | { outcome: 'sent'; externalMessageId: string; httpStatus: number }
    | { outcome: 'transient'; error: string; httpStatus?: number; retryAfterMs?: number }
    | { outcome: 'permanent'; error: string; httpStatus?: number }
  );

export interface DeliveryClient {
  readonly mode: 'webhook' | 'dry-run';
  /**
   * Never rejects: every failure is a transient or permanent result. When
   * `signal` aborts (the shutdown deadline) the request is abandoned and the
   * result is transient. Each request in flight adds one listener to
   * `signal` while it lasts (raise its limit with events.setMaxListeners when
   * more than 10 share it).
   */
  deliver(message: OutboundMessage, signal?: AbortSignal): Promise<DeliveryResult>;
  close(): Promise<void>;
}

export interface WebhookClientOptions {
  url: string;
  authHeader?: string;
  authValue?: string;
  /** Whole-request budget: connecting, sending, and reading the response. */
  timeoutMs: number;
  /** Response bodies are read up to this many bytes; default 64 KiB. */
  maxResponseBytes?: number;
  /** Adds the Standard Webhooks headers (WEBHOOK_SIGNING_SECRET); unset: unsigned. */
  signer?: WebhookSigner;
  /** The signing secrets (`whsec_…`) the signer holds: redacted, like the auth value, from errors and excerpts. */
  signingSecrets?: readonly string[];
}

/** The delivery history keeps at most this many characters of a response body. */
export const RESPONSE_EXCERPT_CHARS = 1024;

const DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024;
/** Past the cap, a response body is still read (and dropped) up to this many bytes, to keep its connection. */
const DRAIN_BYTES = 256 * 1024;
/** …and for at most this long (ms); a body still coming then closes its connection. */
const DRAIN_MS = 1_000;
const EXCERPT_CHARS = 200;

export function createWebhookClient(options: WebhookClientOptions): DeliveryClient {
  const url = new URL(options.url);
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new Error(`webhook URL must be http or https, got ${url.protocol}`);
  }
  if (Boolean(options.authHeader) !== Boolean(options.authValue)) {
    throw new Error('webhook auth header name and value must be set together');
  }
  const { timeoutMs, authValue } = options;
  const maxResponseBytes = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
  const fixedHeaders: Record<string, string> = { 'content-type': 'application/json' };
  if (options.authHeader && authValue) fixedHeaders[options.authHeader.toLowerCase()] = authValue;

  const agent = new Agent({ keepAliveTimeout: 10_000, keepAliveMaxTimeout: 60_000 });
  const secrets = [authValue ?? '', ...(options.signingSecrets ?? []).flatMap((secret) => [secret, secret.slice(6)])];

  const redactSecrets = redactor(secrets);

  async function deliver(message: OutboundMessage, signal?: AbortSignal): Promise<DeliveryResult> {
    let redact = redactSecrets;
    if (signal?.aborted) return { outcome: 'transient', error: 'aborted: shutting down' };
    // One controller per request, aborted by its timeout or by the caller's signal: cheaper per request than
    // AbortSignal.any(), a composite signal tracked by weak references.
    const abort = new AbortController();
    const timer = startTimeout(abort, timeoutMs);
    const onCallerAbort = () => abort.abort();
    signal?.addEventListener('abort', onCallerAbort, { once: true });
    try {
      const body = JSON.stringify({ to: message.to, content: message.content });
      const signature = options.signer?.headers(message.id, body) ?? {};
      if (options.signer) redact = redactor([...secrets, ...signatureForms(signature['webhook-signature'])]);
      const response = await post(
        agent,
        url,
        {
          ...fixedHeaders,
          'idempotency-key': message.id,
          ...(message.traceparent ? { traceparent: message.traceparent } : {}),
          ...signature,
        },
        body,
        maxResponseBytes,
        abort.signal,
      );
      const answer = response.body;
      const result = classifyResponse(
        response.statusCode,
        firstHeader(response.headers['retry-after']),
        answer,
        maxResponseBytes,
        () => serverNow(firstHeader(response.headers.date)),
      );
      const responseExcerpt = excerptOf(redact(answer.text));
      const withBody = responseExcerpt === undefined ? result : { ...result, responseExcerpt };
      return withBody.outcome === 'sent' ? withBody : { ...withBody, error: redact(withBody.error) };
    } catch (error) {
      if (signal?.aborted) return { outcome: 'transient', error: 'aborted: shutting down' };
      if (abort.signal.aborted)
        return { outcome: 'transient', error: `timeout after ${timeoutMs} ms`, attemptError: 'timeout' };
      return {
        outcome: 'transient',
        error: redact(describeNetworkError(error)),
        attemptError: redact(networkErrorKind(error) ?? describeNetworkError(error)),
      };
    } finally {
      timer.clear();
      signal?.removeEventListener('abort', onCallerAbort);
    }
  }

  return {
    mode: 'webhook',
    deliver,
    close: () => agent.close(),
  };
}

/**
 * The whole-request timeout. A timer that fires far later than asked means
 * the process was paused (frozen, swapped, a long GC): the reply may already
 * be waiting in the socket, so it gets a moment to be read before the request
 * is abandoned, rather than reporting a timeout for a delivery the webhook
 * has accepted (which would send it again).
 */
function startTimeout(controller: AbortController, timeoutMs: number): { clear(): void } {
  const startedAt = Date.now();
  let timer = setTimeout(() => {
    if (Date.now() - startedAt > timeoutMs + 1_000) timer = setTimeout(() => controller.abort(), 250);
    else controller.abort();
  }, timeoutMs);
  return { clear: () => clearTimeout(timer) };
}

/** Delivery for when no webhook is configured: everything "succeeds" at once, with httpStatus 0 (no HTTP was done). */
export function createDryRunClient(): DeliveryClient {
  return {
    mode: 'dry-run',
    deliver: async () => ({ outcome: 'sent', externalMessageId: `dryrun-${randomUUID()}`, httpStatus: 0 }),
    close: async () => {},
  };
}

/**
 * The server's clock at the time of its response (its `Date` header, epoch
 * ms), so an HTTP-date Retry-After is measured against the clock that wrote
 * it, not ours. Falls back to our clock when the header is missing or unreadable.
 */
export function serverNow(dateHeader: string | undefined, fallback: number = Date.now()): number {
  const date = dateHeader === undefined ? Number.NaN : Date.parse(dateHeader);
  return Number.isNaN(date) ? fallback : date;
}

/** Retry-After as milliseconds from `now`: delta-seconds or an HTTP-date. Undefined when absent or unreadable. */
export function parseRetryAfter(header: string | undefined, now: number = Date.now()): number | undefined {
  if (header === undefined) return undefined;
  const value = header.trim();
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  // An HTTP-date always has letters (day and month names, GMT); this keeps Date.parse away from "-1" or "1.5".
  if (!/[a-z]/i.test(value)) return undefined;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

interface CappedBody {
  text: string;
  /** The body went on past the cap; `text` holds only its start. */
  tooLarge: boolean;
}

interface WebhookResponse {
  statusCode: number;
  /** Lowercase names; a repeated header is an array. */
  headers: Record<string, string | string[] | undefined>;
  body: CappedBody;
}

/**
 * One POST through undici's dispatcher (its handler API): the response's
 * status, headers and body as text (UTF-8, a leading byte order mark
 * dropped), read up to `maxBytes`. A longer body is cut there and answered
 * at once; the rest is read and dropped while it stays within DRAIN_BYTES
 * and DRAIN_MS (the connection is kept for the next request), else the
 * connection is closed. Rejects with undici's error
 * (connection refused, reset, a malformed response, …) or, once `signal`
 * aborts, at once with its reason, the request abandoned. Unlike
 * undici.request(), no response stream is made per request: less CPU and
 * garbage per message (docs/benchmarks.md).
 */
function post(
  agent: Dispatcher,
  url: URL,
  headers: Record<string, string>,
  body: string,
  maxBytes: number,
  signal: AbortSignal,
): Promise<WebhookResponse> {
  return new Promise((resolve, reject) => {
    let controller: Dispatcher.DispatchController | undefined;
    let done = false;
    let statusCode = 0;
    let responseHeaders: WebhookResponse['headers'] = {};
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    /** Bytes past the cap read and dropped: up to DRAIN_BYTES are, so the connection is kept. */
    let dropped = 0;
    let drainTimer: NodeJS.Timeout | undefined;
    const finish = (error: unknown) => {
      if (done) return;
      done = true;
      signal.removeEventListener('abort', onAbort);
      if (error !== undefined) return reject(error);
      try {
        resolve({ statusCode, headers: responseHeaders, body: { text: decodeText(Buffer.concat(chunks)), tooLarge } });
      } catch (decodeError) {
        reject(decodeError);
      }
    };
    // Before the request has a connection there is nothing to abort yet: onRequestStart aborts it then.
    const onAbort = () => {
      controller?.abort(signal.reason);
      finish(signal.reason);
    };
    if (signal.aborted) return finish(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    agent.dispatch(
      { origin: url.origin, path: `${url.pathname}${url.search}`, method: 'POST', headers, body },
      {
        onRequestStart(started) {
          controller = started;
          if (done) started.abort(signal.reason ?? new Error('request abandoned'));
        },
        onResponseStart(_controller, status, received) {
          statusCode = status;
          responseHeaders = received;
        },
        onResponseData(started, chunk) {
          if (tooLarge) {
            // The answer is known (too large); read on only while the excess stays small.
            dropped += chunk.length;
            if (dropped > DRAIN_BYTES) started.abort(new Error('response body over the cap'));
            return;
          }
          if (done) return;
          const room = Math.max(0, Math.floor(maxBytes - size));
          if (chunk.length > room) {
            chunks.push(chunk.subarray(0, room));
            tooLarge = true;
            dropped = chunk.length - room;
            finish(undefined);
            const cut = () => started.abort(new Error('response body over the cap'));
            if (dropped > DRAIN_BYTES) cut();
            else drainTimer = setTimeout(cut, DRAIN_MS);
            return;
          }
          chunks.push(chunk);
          size += chunk.length;
        },
        onResponseEnd: () => {
          clearTimeout(drainTimer);
          finish(undefined);
        },
        onResponseError: (_controller, error) => {
          clearTimeout(drainTimer);
          finish(error);
        },
      },
    );
  });
}

/** UTF-8 text without a leading byte order mark, as fetch and undici's `body.text()` read it (RFC 8259 §8.1). */
function decodeText(bytes: Buffer): string {
  const text = bytes.toString('utf8');
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

function classifyResponse(
  status: number,
  retryAfter: string | undefined,
  body: CappedBody,
  maxBytes: number,
  /** The server's clock (epoch ms), read only for a Retry-After. */
  now: () => number,
): DeliveryResult {
  if (status >= 200 && status < 300) {
    if (body.tooLarge)
      return {
        outcome: 'permanent',
        httpStatus: status,
        error: `HTTP ${status}: response too large (over ${maxBytes} bytes)`,
        attemptError: `HTTP ${status}: response too large (over ${maxBytes} bytes)`,
      };
    const messageId = messageIdOf(body.text);
    if (messageId === 'not-json')
      return {
        outcome: 'permanent',
        httpStatus: status,
        error: withExcerpt(`HTTP ${status}: response is not JSON`, body.text),
        attemptError: `HTTP ${status}: response is not JSON`,
      };
    if (messageId === undefined)
      return {
        outcome: 'permanent',
        httpStatus: status,
        error: withExcerpt(`HTTP ${status}: response has no messageId`, body.text),
        attemptError: `HTTP ${status}: response has no messageId`,
      };
    return { outcome: 'sent', externalMessageId: messageId, httpStatus: status };
  }
  const error = withExcerpt(`HTTP ${status}`, body.text);
  const attemptError = `HTTP ${status}`;
  if (status === 408 || status === 429 || status >= 500) {
    const retryAfterMs = retryAfter === undefined ? undefined : parseRetryAfter(retryAfter, now());
    return retryAfterMs === undefined
      ? { outcome: 'transient', httpStatus: status, error, attemptError }
      : { outcome: 'transient', httpStatus: status, error, attemptError, retryAfterMs };
  }
  return { outcome: 'permanent', httpStatus: status, error, attemptError };
}

function messageIdOf(text: string): string | undefined | 'not-json' {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return 'not-json';
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const { messageId } = parsed as { messageId?: unknown };
  return typeof messageId === 'string' && messageId.trim() !== '' ? messageId : undefined;
}

/** `prefix: <first 200 characters of the body on one line>`, or just `prefix` for an empty body. */
function withExcerpt(prefix: string, body: string): string {
  const oneLine = body.replace(/[\s\p{Cc}]+/gu, ' ').trim();
  if (oneLine === '') return prefix;
  const excerpt = oneLine.length > EXCERPT_CHARS ? `${oneLine.slice(0, EXCERPT_CHARS)}…` : oneLine;
  return `${prefix}: ${excerpt}`;
}

/**
 * The first RESPONSE_EXCERPT_CHARS characters of `text` (code points, so no
 * character is cut in two), with NUL, which PostgreSQL text cannot hold, as
 * U+FFFD. Undefined for an empty body.
 */
export function excerptOf(text: string, maxChars: number = RESPONSE_EXCERPT_CHARS): string | undefined {
  if (text === '') return undefined;
  let chars = 0;
  let end = 0;
  for (const char of text) {
    if (chars === maxChars) break;
    chars += 1;
    end += char.length;
  }
  return text.slice(0, end).replaceAll('\u0000', '\uFFFD');
}

/** Replaces every occurrence of each non-empty value with `[redacted]`, longest first (a secret before its tail). */
export function redactor(values: readonly string[]): (text: string) => string {
  const known = [...new Set(values.filter((value) => value !== ''))].sort((a, b) => b.length - a.length);
  return (text) => known.reduce((out, value) => out.replaceAll(value, '[redacted]'), text);
}

/** A `webhook-signature` header value, each of its `v1,<base64>` signatures, and each bare base64 part. */
function signatureForms(header: string | undefined): string[] {
  if (!header) return [];
  const parts = header.split(' ');
  return [header, ...parts, ...parts.map((part) => part.slice(part.indexOf(',') + 1))];
}

/** The usual network failures in the words an operator reads them in; undefined for any other. */
function networkErrorKind(error: unknown): string | undefined {
  const kinds: Record<string, string> = {
    ECONNREFUSED: 'connection refused',
    ECONNRESET: 'connection reset',
    ENOTFOUND: 'host not found',
    EAI_AGAIN: 'host not found',
    EHOSTUNREACH: 'host unreachable',
    ENETUNREACH: 'network unreachable',
    UND_ERR_SOCKET: 'connection closed',
    UND_ERR_CONNECT_TIMEOUT: 'timeout',
    UND_ERR_HEADERS_TIMEOUT: 'timeout',
    UND_ERR_BODY_TIMEOUT: 'timeout',
  };
  for (let cause = error, depth = 0; cause instanceof Error && depth < 3; cause = cause.cause, depth += 1) {
    const code = (cause as { code?: unknown }).code;
    if (typeof code === 'string' && kinds[code]) return kinds[code];
  }
  return undefined;
}

function describeNetworkError(error: unknown): string {
  const cause = error instanceof Error && error.cause instanceof Error ? ` (${error.cause.message})` : '';
  const detail = error instanceof Error ? `${error.message}${cause}` : String(error);
  return `network error: ${detail.slice(0, EXCERPT_CHARS)}`;
}

function firstHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
