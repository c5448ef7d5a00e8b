import type { RequestHandler } from 'express';
import { ValidationError } from '../errors.ts';
import type { SpecRoutes } from './spec-routes.ts';

/**
 * Query parameters arrive as text and are parsed into the spec's types by the
 * OpenAPI validator, which would read `1e309`, `Infinity`, ` 5` or `0x10` as
 * numbers. This check runs first: a parameter the spec types as `integer`
 * must be written as plain decimal digits (an optional minus sign, at most 15
 * digits), and any parameter given twice is refused. Range checks stay with
 * the validator. Errors: 400 `validation_failed` naming the parameter.
 */
export function strictQueryText(routes: SpecRoutes): RequestHandler {
  return (req, _res, next) => {
    const operation = routes.operation(req.method, req.path);
    if (!operation) return next();
    for (const [name, value] of Object.entries(req.query)) {
      if (Array.isArray(value)) {
        return next(new ValidationError('validation_failed', `${name}: must be given once`));
      }
      if (operation.query.get(name) === 'integer' && !/^-?\d{1,15}$/.test(String(value))) {
        return next(new ValidationError('validation_failed', `${name}: must be a whole number written in digits`));
      }
    }
    next();
  };
}
