import { readFileSync } from 'node:fs';
import express, { type Router } from 'express';
import { AppError } from '../errors.ts';

/**
 * The operator console: one page (`GET /console`, also `/console/`, the
 * `getConsole` operation of openapi.yaml, served by the route table without
 * an API key) and its three assets below `/console/`, all from this folder's
 * `console/` files: plain DOM and SVG, no library, no inline script or style,
 * so it runs under the service's own Content-Security-Policy unchanged. The
 * page calls only the public API; when API keys are in force it asks for one
 * (the page says so in a meta tag, so it never has to meet a 401 first).
 */

/** Where the console's assets are served: below this path. */
export const consolePathPrefix = '/console';

/** Metric and log label for every console asset: bounded, whatever the path. */
export const consoleRouteLabel = '/console/*';

const folder = new URL('./console/', import.meta.url);

/** The assets by their path below /console, with their content types; read once at start. */
const assets: Record<string, { type: string; body: Buffer }> = {
  '/console.js': { type: 'text/javascript; charset=utf-8', body: readFileSync(new URL('console.js', folder)) },
  '/console.css': { type: 'text/css; charset=utf-8', body: readFileSync(new URL('console.css', folder)) },
  '/favicon.svg': { type: 'image/svg+xml', body: readFileSync(new URL('favicon.svg', folder)) },
};

const pageTemplate = readFileSync(new URL('index.html', folder), 'utf8');
const pages = {
  required: pageTemplate.replace('{{apiKey}}', 'required'),
  none: pageTemplate.replace('{{apiKey}}', 'none'),
};

/**
 * The console page's HTML.
 * @param keyRequired API keys are in force: the page asks for one before its first call
 */
export function consolePage(keyRequired: boolean): string {
  return keyRequired ? pages.required : pages.none;
}

/**
 * The router for the console's assets (`/console/console.js`, `console.css`,
 * `favicon.svg`), to mount before the API key check: GET and HEAD, any other
 * method 405 with `Allow`; any other path below /console falls through (404).
 */
export function consoleAssetRoutes(): Router {
  const router = express.Router({ caseSensitive: true, strict: true });
  router.use(consolePathPrefix, (req, res, next) => {
    if (!Object.hasOwn(assets, req.path)) return next();
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return next(
        new AppError(405, 'method_not_allowed', `${req.method} is not allowed on ${req.originalUrl.split('?')[0]}`, {
          Allow: 'GET, HEAD',
        }),
      );
    }
    const asset = assets[req.path] as { type: string; body: Buffer };
    res.type(asset.type).set('Cache-Control', 'no-cache').send(asset.body);
  });
  return router;
}
