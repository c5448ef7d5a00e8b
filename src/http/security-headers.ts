import type { RequestHandler } from 'express';
import helmet from 'helmet';

/**
 * helmet's security headers on every response, with a Content-Security-Policy
 * that Swagger UI works under: scripts and styles from this origin only (the
 * UI's init code is an external script, no inline script is allowed), inline
 * styles (the UI sets style attributes), images from this origin and data:
 * URLs (its icons), API calls to this origin only. No frame may embed the
 * pages. `upgrade-insecure-requests` is left out: the service is often
 * reached over plain HTTP on localhost or behind a TLS-terminating proxy, and
 * the upgrade would break the UI's assets there.
 */
export function securityHeaders(): RequestHandler {
  return helmet({
    frameguard: { action: 'deny' },
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'self'"],
        baseUri: ["'self'"],
        scriptSrc: ["'self'"],
        scriptSrcAttr: ["'none'"],
        styleSrc: ["'self'", "'unsafe-inline'"],
        imgSrc: ["'self'", 'data:'],
        fontSrc: ["'self'", 'data:'],
        connectSrc: ["'self'"],
        objectSrc: ["'none'"],
        frameAncestors: ["'none'"],
        formAction: ["'self'"],
      },
    },
  });
}
