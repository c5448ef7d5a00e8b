import type { ErrorRequestHandler, RequestHandler } from 'express';
import { databaseRetryAfterSeconds, isDatabaseUnavailable } from '../db/unavailable.ts';
import { AppError } from '../errors.ts';
import type { Logger } from '../observability/logger.ts';

/** The one error body of the API: {"error": {"code", "message"}}. */
export function errorBody(code: string, message: string) {
  return { error: { code, message } };
}

export const notFound: RequestHandler = (req, res) => {
  res.status(404).json(errorBody('not_found', `no route for ${req.method} ${req.path}`));
};

/**
 * Translates every error into the error body with a fitting status. Only
 * errors we raised on purpose show their message; anything else is a 500
 * with a generic message, logged with its stack, never sent to the client.
 */
export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (error, req, res, _next) => {
    const { status, code, message } = classify(error);
    if (status >= 500) logger.error({ err: error, method: req.method, path: req.path }, 'request failed');
    if (res.headersSent) return;
    if (status === 503) res.setHeader('Retry-After', String(databaseRetryAfterSeconds));
    res.status(status).json(errorBody(code, message));
  };
}

function classify(error: any): { status: number; code: string; message: string } {
  if (error instanceof AppError) return { status: error.status, code: error.code, message: error.message };
  // body-parser
  if (error?.type === 'entity.parse.failed')
    return { status: 400, code: 'malformed_json', message: 'request body is not valid JSON' };
  if (error?.type === 'entity.too.large')
    return { status: 413, code: 'payload_too_large', message: `request body is larger than ${error.limit} bytes` };
  if (error?.type === 'encoding.unsupported' || error?.type === 'charset.unsupported')
    return { status: 415, code: 'unsupported_encoding', message: String(error.message) };
  // express-openapi-validator
  if (typeof error?.status === 'number' && Array.isArray(error.errors)) {
    const status: number = error.status;
    const first = error.errors[0];
    const detail = first ? `${describePath(first.path)}${first.message}` : String(error.message);
    const code =
      status === 404
        ? 'not_found'
        : status === 405
          ? 'method_not_allowed'
          : status === 415
            ? 'unsupported_media_type'
            : 'validation_failed';
    return { status, code, message: status === 404 ? 'no such route' : detail };
  }
  if (isDatabaseUnavailable(error))
    return { status: 503, code: 'unavailable', message: 'the database is unavailable; try again shortly' };
  return { status: 500, code: 'internal_error', message: 'internal server error' };
}

function describePath(path: unknown): string {
  if (typeof path !== 'string' || path === '') return '';
  // "/body/messages/3/to" -> "messages[3].to: "
  const parts = path
    .replace(/^\/(body|query|params|headers)\/?/, '')
    .split('/')
    .filter(Boolean);
  if (parts.length === 0) return '';
  const field = parts.reduce(
    (acc, part) => (/^\d+$/.test(part) ? `${acc}[${part}]` : acc ? `${acc}.${part}` : part),
    '',
  );
  return `${field}: `;
}
