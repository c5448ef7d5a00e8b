import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from '../observability/logger.ts';
import { errorBody } from './errors.ts';

/**
 * The HTTP server around the express app. Two things happen before express
 * sees a request:
 *
 * - A request line in absolute form (`GET http://host/jobs HTTP/1.1`, legal
 *   HTTP/1.1 that proxies send, RFC 9112 §3.2.2) is served as its path and
 *   query (`/jobs`), its authority taking the place of the Host header.
 * - A request Node's HTTP parser refuses (bad Content-Length, a control byte
 *   in a header, a non-ASCII byte in the path, an unknown method, broken
 *   chunked encoding, headers over 16 KB) never reaches express; it gets the
 *   API's error body `{"error": {"code", "message"}}` with the status of
 *   `clientErrorAnswer` and `Connection: close`, instead of Node's bare 400.
 * - A request with an `Expect` other than `100-continue` is served like any
 *   other, not answered with Node's bare 417; an HTTP/1.1 request without
 *   `Host` is 400 `missing_host` and `CONNECT` 501 `method_not_implemented`,
 *   both with the error body.
 */
export function createHttpServer(app: RequestListener, logger: Logger): Server {
  // The response in flight on each connection: a parser error in a request body arrives after it began.
  const inFlight = new WeakMap<Socket, ServerResponse>();
  const serve: RequestListener = (req, res) => {
    inFlight.set(req.socket, res);
    res.once('finish', () => inFlight.delete(req.socket));
    servePathOfAbsoluteForm(req);
    if (req.httpVersion === '1.1' && req.headers.host === undefined) {
      // RFC 9112 §3.2 requires the 400; Node's own (requireHostHeader) has no error body.
      answerAndClose(res, 400, errorBody('missing_host', 'an HTTP/1.1 request needs a Host header'));
      return;
    }
    app(req, res);
  };
  const server = createServer({ requireHostHeader: false }, serve);
  // CONNECT (a tunnel through a proxy, which this is not): the error body rather than a silent close.
  server.on('connect', (_req: IncomingMessage, socket: Socket) => {
    writeRawAnswer(
      socket,
      501,
      'Not Implemented',
      errorBody('method_not_implemented', 'method CONNECT is not implemented'),
    );
  });
  // An Expect other than 100-continue: served as usual (RFC 9110 §10.1.1 allows, not requires, a 417),
  // instead of Node's bare 417 without the error body, a status no operation documents.
  server.on('checkExpectation', serve);
  server.on('clientError', (error: NodeJS.ErrnoException & { reason?: string; rawPacket?: Buffer }, socket: Socket) => {
    const answer = clientErrorAnswer(error);
    if (!answer || !socket.writable) {
      socket.destroy();
      return;
    }
    logger.debug({ code: error.code, status: answer.status, reason: error.message }, 'malformed HTTP request refused');
    const body = errorBody(answer.code, answer.message);
    const res = inFlight.get(socket);
    if (res?.req.complete) {
      // The refused bytes follow a whole request (pipelined junk): that request is served and answered, then
      // the junk gets its own answer. Its method cannot be told from rawPacket, which begins with that request.
      answerAfter(res, socket, answer.code === 'method_not_implemented' ? malformedNext : answer);
    } else if (res?.headersSent) {
      socket.destroy(); // part of an answer is out: nothing sensible can follow
    } else if (res) {
      // express is still reading this request's body; answer on its response (which carries the security headers).
      answerAndClose(res, answer.status, body, () => socket.destroy());
    } else {
      writeRawAnswer(socket, answer.status, answer.reason, body);
    }
  });
  return server;
}

/** The answer to bytes after a whole request on one connection that are no request line. */
const malformedNext: ClientErrorAnswer = {
  status: 400,
  reason: 'Bad Request',
  code: 'malformed_request',
  message: 'the request line is not valid HTTP/1.1',
};

/**
 * Lets the request `res` answers finish, then writes `answer` (the API's error
 * body, `Connection: close`) for what followed it on `socket` and closes: two
 * answers in order, as for any two pipelined requests.
 */
function answerAfter(res: ServerResponse, socket: Socket, answer: ClientErrorAnswer): void {
  const body = errorBody(answer.code, answer.message);
  if (res.writableFinished) writeRawAnswer(socket, answer.status, answer.reason, body);
  else res.once('finish', () => writeRawAnswer(socket, answer.status, answer.reason, body));
}

/** Answers `body` (the API's error body) as JSON on `res` and closes the connection after it. */
function answerAndClose(res: ServerResponse, status: number, body: object, then?: () => void): void {
  const text = JSON.stringify(body);
  res.shouldKeepAlive = false;
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    'X-Content-Type-Options': 'nosniff',
    Connection: 'close',
  });
  res.end(text, then);
}

/** Writes a whole HTTP/1.1 answer on a socket no response object owns (a parser error, CONNECT), then closes it. */
function writeRawAnswer(socket: Socket, status: number, reason: string, body: object): void {
  const text = JSON.stringify(body);
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\n` +
      'Content-Type: application/json; charset=utf-8\r\n' +
      `Content-Length: ${Buffer.byteLength(text)}\r\n` +
      'X-Content-Type-Options: nosniff\r\n' +
      'Connection: close\r\n\r\n' +
      text,
    () => socket.destroy(),
  );
}

/** What a request refused by Node's HTTP parser is answered; undefined for a connection that just failed (reset). */
export interface ClientErrorAnswer {
  status: number;
  /** HTTP reason phrase. */
  reason: string;
  code: string;
  message: string;
}

/**
 * Maps a Node `clientError` (`error.code` HPE_* from llhttp,
 * ERR_HTTP_REQUEST_TIMEOUT) to an answer:
 * - headers over Node's 16 KB limit: 431 `request_header_fields_too_large`;
 * - chunk extensions over Node's limit: 413 `payload_too_large`;
 * - the request not complete within the server's request timeout: 408 `request_timeout`;
 * - a well-formed request line whose method Node does not know (`FOO /jobs HTTP/1.1`):
 *   501 `method_not_implemented` (RFC 9110 §9.1);
 * - any other parse error: 400 with a code naming what was wrong
 *   (`invalid_content_length`, `invalid_header`, `invalid_url`, `invalid_chunked_encoding`,
 *   `malformed_request`).
 */
export function clientErrorAnswer(error: {
  code?: string;
  reason?: string;
  rawPacket?: Buffer;
}): ClientErrorAnswer | undefined {
  const badRequest = (code: string, message: string) => ({ status: 400, reason: 'Bad Request', code, message });
  switch (error.code) {
    case 'ECONNRESET':
    case 'EPIPE':
      return undefined;
    case 'HPE_HEADER_OVERFLOW':
      return {
        status: 431,
        reason: 'Request Header Fields Too Large',
        code: 'request_header_fields_too_large',
        message: 'the request headers are larger than 16 KB',
      };
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return {
        status: 413,
        reason: 'Content Too Large',
        code: 'payload_too_large',
        message: 'the chunk extensions are too large',
      };
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return {
        status: 408,
        reason: 'Request Timeout',
        code: 'request_timeout',
        message: 'the request was not complete in time',
      };
    case 'HPE_INVALID_METHOD': {
      const method = /^([!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}) \S+ HTTP\/\d\.\d\r?\n/.exec(
        error.rawPacket?.toString('latin1') ?? '',
      )?.[1];
      if (!method) return badRequest('malformed_request', 'the request line is not valid HTTP/1.1');
      return {
        status: 501,
        reason: 'Not Implemented',
        code: 'method_not_implemented',
        message: `method ${method} is not implemented`,
      };
    }
    case 'HPE_INVALID_CONTENT_LENGTH':
    case 'HPE_UNEXPECTED_CONTENT_LENGTH':
      // llhttp's reason "Content-Length can't be present with Transfer-Encoding": a Content-Length after chunked.
      return /Transfer-Encoding/i.test(error.reason ?? '')
        ? badRequest('invalid_content_length', 'send Content-Length or Transfer-Encoding: chunked, not both')
        : badRequest('invalid_content_length', 'the Content-Length header is not a single decimal number');
    case 'HPE_INVALID_HEADER_TOKEN':
    case 'HPE_LF_EXPECTED':
    case 'HPE_CR_EXPECTED':
      return badRequest('invalid_header', 'a header name or value has a character HTTP does not allow');
    case 'HPE_INVALID_URL':
      return badRequest('invalid_url', 'the request target has a character HTTP does not allow (encode it as %XX)');
    case 'HPE_INVALID_CHUNK_SIZE':
    case 'HPE_INVALID_TRANSFER_ENCODING':
      return badRequest('invalid_chunked_encoding', 'the body is not valid chunked encoding');
    default:
      return badRequest('malformed_request', 'the request is not valid HTTP/1.1');
  }
}

const absoluteForm = /^https?:\/\/([^/?#]*)/i;

/** `http://host/jobs?x` -> `/jobs?x` (and Host: host), so routing, logs and metrics see the path. */
function servePathOfAbsoluteForm(req: IncomingMessage): void {
  const url = req.url ?? '/';
  const match = absoluteForm.exec(url);
  if (!match) return;
  const rest = url.slice(match[0].length);
  req.url = rest.startsWith('/') ? rest : `/${rest}`;
  const authority = match[1]!.replace(/^.*@/, '');
  if (authority) req.headers.host = authority;
}
