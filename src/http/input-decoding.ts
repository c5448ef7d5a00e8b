import express, { type NextFunction, type Request, type RequestHandler } from 'express';
import { AppError, ValidationError } from '../errors.ts';

/**
 * The one place where text enters the service: the request URL (path and
 * query) and JSON bodies. Text must be valid Unicode. Invalid UTF-8 bytes, a
 * percent-escape that does not decode to UTF-8, or a lone surrogate written as
 * a JSON escape (`"ab\ud83dcd"`) is a 400 that names where it was found, never
 * silently replaced with U+FFFD. Nothing downstream sees such text, so nothing
 * is stored.
 */

const utf8 = new TextDecoder('utf-8', { fatal: true });
const lenientUtf8 = new TextDecoder('utf-8');

/**
 * Rejects a request whose URL is not ASCII or whose percent-escapes are
 * malformed (`%zz`, a trailing `%`) or do not decode to valid UTF-8 (`%ff`,
 * `%ed%a0%80`, a lone surrogate). Applies to the path (and so to path
 * parameters) and the query string alike.
 */
export const rejectInvalidUrlText: RequestHandler = (req, _res, next) => {
  const problem = urlTextProblem(req.url);
  if (problem) return next(new ValidationError(problem.code, problem.message));
  next();
};

/**
 * Why a raw request-target (`/path?query`) is not valid text, or undefined.
 * Exported for tests. Node hands the target over byte for byte (latin1), so any
 * character above U+007E here is a raw byte the client did not percent-encode.
 */
export function urlTextProblem(url: string): { code: string; message: string } | undefined {
  const queryAt = url.indexOf('?');
  const parts: Array<['path' | 'query string', string]> = [['path', queryAt === -1 ? url : url.slice(0, queryAt)]];
  if (queryAt !== -1) parts.push(['query string', url.slice(queryAt + 1)]);
  for (const [where, text] of parts) {
    if (/[^\x21-\x7e]/.test(text)) {
      return {
        code: 'invalid_url',
        message: `the ${where} contains a raw byte that is not printable ASCII; percent-encode UTF-8 text`,
      };
    }
    if (/%(?![0-9a-fA-F]{2})/.test(text)) {
      return { code: 'invalid_url', message: `the ${where} contains a malformed percent-escape` };
    }
    const escapes = text.match(/(%[0-9a-fA-F]{2})+/g) ?? [];
    for (const run of escapes) {
      const bytes = Buffer.from(run.replace(/%/g, ''), 'hex');
      try {
        utf8.decode(bytes);
      } catch {
        return {
          code: 'invalid_unicode',
          message: `the ${where} has percent-escapes that are not valid UTF-8 (${run.slice(0, 24)})`,
        };
      }
    }
  }
  return undefined;
}

/** Media types read as JSON; the spec's request bodies are all `application/json`. */
const isJsonMediaType = (type: string) => /^application\/([\w.-]+\+)?json$/i.test(type.split(';')[0]!.trim());

/**
 * Reads and decodes a JSON request body, for requests `accepts(req)` says
 * carry one (the operations with a `requestBody`); other requests' bodies are
 * never read. body-parser does the transport (Content-Length,
 * Content-Encoding gzip/deflate/br/zstd, the size limit measured after
 * decompression) and leaves its own 4xx errors (bad gzip, unsupported
 * encoding, too large) for the error handler; this layer decodes the bytes as
 * strict UTF-8 (another charset: 415), parses JSON (only an object or array at
 * the top, as body-parser's `strict`), and checks every string and key for
 * lone surrogates. An empty body counts as no body (`req.body` undefined).
 */
export function jsonBody(limit: string, accepts: (req: Request) => boolean): RequestHandler {
  const read = express.raw({ type: (req) => isJsonMediaType(String(req.headers['content-type'] ?? '')), limit });
  const decode = (req: Request, next: NextFunction) => {
    if (!Buffer.isBuffer(req.body)) return next();
    const bytes: Buffer = req.body;
    req.body = undefined;
    if (bytes.length === 0) return next();
    const charset = /;\s*charset\s*=\s*"?([^";\s]*)"?/i.exec(String(req.headers['content-type']))?.[1]?.toLowerCase();
    if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') {
      return next(
        new AppError(415, 'unsupported_charset', `unsupported charset "${charset}": JSON bodies must be UTF-8`),
      );
    }
    try {
      req.body = decodeJson(bytes);
    } catch (error) {
      return next(error);
    }
    next();
  };
  return (req, res, next) => {
    if (!accepts(req)) return next();
    read(req, res, (error?: any) => {
      if (!error) return decode(req, next);
      // body-parser's own errors carry a `type` (too large, unsupported encoding …) and go to the
      // error handler as they are; an untyped 400 is the decompressor failing on the bytes.
      if (error.type === undefined && error.status === 400) {
        const encoding = String(req.headers['content-encoding'] ?? 'compressed');
        return next(new ValidationError('invalid_content_encoding', `request body is not valid ${encoding} data`));
      }
      next(error);
    });
  };
}

/**
 * Decodes UTF-8 JSON bytes into a value. Throws ValidationError: `malformed_json`
 * for a syntax error or a top-level scalar; for invalid text, `invalid_content`
 * when it sits in a message's `content`, else `invalid_unicode`, naming the field
 * (`messages[3].content`).
 */
export function decodeJson(bytes: Uint8Array): unknown {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    // Find the field for the message: decode leniently and look for the replacement character.
    const field = parseOrUndefined(lenientUtf8.decode(bytes));
    const where = field === undefined ? undefined : firstString(field, (value) => value.includes('\uFFFD'));
    throw invalidText(where, 'contains bytes that are not valid UTF-8');
  }
  const value = parseOrUndefined(text);
  if (value === undefined) throw new ValidationError('malformed_json', 'request body is not valid JSON');
  if (typeof value !== 'object' || value === null) {
    throw new ValidationError('malformed_json', 'request body must be a JSON object or array');
  }
  const illFormed = firstString(value, (string) => !string.isWellFormed());
  if (illFormed !== undefined) throw invalidText(illFormed, 'contains a lone surrogate (an unpaired \\uD800-\\uDFFF)');
  return value;
}

function parseOrUndefined(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function invalidText(field: string | undefined, what: string): ValidationError {
  const name = field || 'request body';
  const isContent = field !== undefined && /(^|\.)content$/.test(field);
  return new ValidationError(
    isContent ? 'invalid_content' : 'invalid_unicode',
    `${name} is not valid Unicode: it ${what}`,
  );
}

/**
 * The path (`messages[3].content`, `""` for the root) of the first object key
 * or string value for which `test` holds, walking without recursion so a
 * deeply nested body cannot exhaust the stack.
 */
export function firstString(root: unknown, test: (value: string) => boolean): string | undefined {
  const stack: Array<[unknown, string]> = [[root, '']];
  while (stack.length > 0) {
    const [value, path] = stack.pop()!;
    if (typeof value === 'string') {
      if (test(value)) return path;
    } else if (Array.isArray(value)) {
      for (let index = value.length - 1; index >= 0; index--) stack.push([value[index], `${path}[${index}]`]);
    } else if (typeof value === 'object' && value !== null) {
      const entries = Object.entries(value);
      for (let index = entries.length - 1; index >= 0; index--) {
        const [key, child] = entries[index]!;
        const childPath = path ? `${path}.${key}` : key;
        if (test(key)) return path ? `${path} (a key)` : 'a key';
        stack.push([child, childPath]);
      }
    }
  }
  return undefined;
}
