import type { ErrorRequestHandler, Request, RequestHandler } from 'express';
import { databaseErrorKind } from '../db/errors.ts';
import { AppError } from '../errors.ts';
import { invalidIdempotencyKey } from '../messages/idempotency.ts';
import { invalidSendAt } from '../messages/message-validation.ts';
import type { Logger } from '../observability/logger.ts';

/** The one error body of the API: {"error": {"code", "message"}}. */
export function errorBody(code: string, message: string) {
  return { error: { code, message } };
}

/** Seconds a client is asked to wait when the database is unavailable. */
export const unavailableRetryAfterSeconds = 5;

export const notFound: RequestHandler = (req, res) => {
  res.status(404).json(errorBody('not_found', `no route for ${req.method} ${req.path}`));
};

/** A classified error: what the client is told. */
export interface ErrorAnswer {
  status: number;
  code: string;
  message: string;
  headers?: Record<string, string>;
}

/**
 * The one place that turns any error into a documented status and the error
 * body. Only errors raised on purpose (AppError), parser and validator 4xx and
 * recognised database conditions show their meaning; anything else is a 500
 * with a generic message, logged with its stack and never sent to the client.
 */
export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (error, req, res, _next) => {
    const answer = classifyError(error, req);
    if (answer.status >= 500) {
      const log = answer.status === 503 ? logger.warn.bind(logger) : logger.error.bind(logger);
      log({ err: error, method: req.method, path: req.path, code: answer.code }, 'request failed');
    }
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (answer.headers) res.set(answer.headers);
    res.status(answer.status).json(errorBody(answer.code, answer.message));
  };
}

/**
 * Maps an error to an answer:
 * - AppError: its own status and code;
 * - body-parser (type `entity.too.large`, `charset.unsupported`, `encoding.unsupported`,
 *   an aborted request): 413, 415 or 400 as body-parser decided (a body that is not
 *   what its Content-Encoding says arrives as an AppError from input-decoding.ts);
 * - express-openapi-validator (`status` and `errors[]`): 400, 404, 405 (with `Allow`),
 *   415 (a required body that is simply missing is a 400 `missing_body`);
 * - database errors (db/errors.ts): unavailable -> 503 `unavailable` with Retry-After,
 *   invalid input -> 400 `invalid_input`, unique violation -> 409 `conflict`;
 * - any other error carrying a 4xx `status` (http-errors, path decoding): that status;
 * - everything else: 500 `internal_error`.
 */
export function classifyError(error: any, req: Request): ErrorAnswer {
  if (error instanceof AppError) {
    return { status: error.status, code: error.code, message: error.message, headers: error.headers };
  }
  const status = httpStatusOf(error);
  // express-openapi-validator
  if (status !== undefined && Array.isArray(error.errors)) return classifyValidatorError(error, status, req);
  // body-parser and raw-body
  switch (error?.type) {
    case 'entity.too.large':
      return {
        status: 413,
        code: 'payload_too_large',
        message: `request body is larger than ${error.limit} bytes (after decompression)`,
      };
    case 'charset.unsupported':
      return { status: 415, code: 'unsupported_charset', message: 'JSON bodies must be UTF-8' };
    case 'encoding.unsupported':
      return {
        status: 415,
        code: 'unsupported_content_encoding',
        message: `unsupported Content-Encoding ${JSON.stringify(req.get('content-encoding') ?? '')}: use gzip, deflate, br, zstd or none`,
      };
    case 'request.aborted':
      return { status: 400, code: 'request_aborted', message: 'the client closed the request before sending its body' };
    case 'request.size.invalid':
      return { status: 400, code: 'invalid_content_length', message: 'the body is not as long as Content-Length says' };
  }
  const kind = databaseErrorKind(error);
  if (kind === 'unavailable') {
    return {
      status: 503,
      code: 'unavailable',
      message: 'the database is unavailable; retry later',
      headers: { 'Retry-After': String(unavailableRetryAfterSeconds) },
    };
  }
  if (kind === 'invalid_input') {
    return { status: 400, code: 'invalid_input', message: `the database refused a value: ${error.message}` };
  }
  if (kind === 'conflict') return { status: 409, code: 'conflict', message: 'the resource already exists' };
  if (error instanceof URIError) return { status: 400, code: 'invalid_url', message: 'the URL is not valid' };
  if (status !== undefined && status >= 400 && status < 500) {
    return { status, code: 'bad_request', message: String(error.message || 'bad request') };
  }
  return { status: 500, code: 'internal_error', message: 'internal server error' };
}

function answerOf(error: AppError): ErrorAnswer {
  return { status: error.status, code: error.code, message: error.message };
}

function classifyValidatorError(error: any, status: number, req: Request): ErrorAnswer {
  const first = error.errors[0];
  const detail = first ? `${describePath(first.path)}${first.message}` : String(error.message);
  switch (status) {
    case 404:
      return { status, code: 'not_found', message: `no route for ${req.method} ${req.path}` };
    case 405:
      return {
        status,
        code: 'method_not_allowed',
        message: `${req.method} is not allowed on ${req.path}`,
        headers: error.headers?.Allow ? { Allow: withHead(String(error.headers.Allow)) } : undefined,
      };
    case 415:
      if (!hasBody(req)) {
        return {
          status: 400,
          code: 'missing_body',
          message: 'request body is required: a JSON object with Content-Type: application/json',
        };
      }
      return {
        status,
        code: 'unsupported_media_type',
        message: `Content-Type must be application/json (got ${JSON.stringify(req.get('content-type') ?? 'none')})`,
      };
    default:
      // The spec's own checks of these two fields answer before the code that owns them, so they
      // answer with that code's error, not a generic validation_failed.
      if (status === 400 && /^\/?headers\/idempotency-key$/i.test(String(first?.path ?? ''))) {
        return answerOf(invalidIdempotencyKey());
      }
      if (status === 400 && /^\/?body\/(messages\/\d+\/)?sendAt$/.test(String(first?.path ?? ''))) {
        return answerOf(invalidSendAt(describePath(first.path).slice(0, -': '.length)));
      }
      return { status: status >= 400 && status < 500 ? status : 400, code: 'validation_failed', message: detail };
  }
}

/** Whether the request carries a body at all (RFC 9112: Content-Length > 0 or Transfer-Encoding). */
export function hasBody(req: Request): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

function withHead(allow: string): string {
  const methods = allow.split(',').map((method) => method.trim().toUpperCase());
  if (methods.includes('GET') && !methods.includes('HEAD')) methods.push('HEAD');
  return methods.join(', ');
}

function httpStatusOf(error: any): number | undefined {
  const status = error?.status ?? error?.statusCode;
  return Number.isInteger(status) && status >= 400 && status <= 599 ? status : undefined;
}

function describePath(path: unknown): string {
  if (typeof path !== 'string' || path === '') return '';
  // "/body/messages/3/to" -> "messages[3].to: "
  const parts = path
    .replace(/^\/?(body|query|params|path|headers)\/?/, '')
    .split('/')
    .filter(Boolean);
  if (parts.length === 0) return '';
  const field = parts.reduce(
    (acc, part) => (/^\d+$/.test(part) ? `${acc}[${part}]` : acc ? `${acc}.${part}` : part),
    '',
  );
  return `${field}: `;
}
