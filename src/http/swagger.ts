import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import express, { type RequestHandler, type Router } from 'express';
import helmet from 'helmet';
import { AppError } from '../errors.ts';

/**
 * Swagger UI for this API at /swagger/index.html (also /swagger/ and /swagger,
 * which redirect there), built from our own page rather than swagger-ui-dist's
 * stock index.html (which loads the Petstore) or swagger-ui-express's setup
 * (whose static files answer /swagger/index.html with that stock page).
 *
 * Everything the page loads comes from this service: the page, its init
 * script (an external file, so no inline script is needed), the spec as JSON,
 * and swagger-ui-dist's assets from node_modules. The online validator badge
 * is switched off (it would call validator.swagger.io). The routes carry their
 * own Content-Security-Policy with `script-src 'self'` and no inline script.
 */

/** Where swagger-ui-express finds its swagger-ui-dist (our dependency brings it). */
const swaggerUiDistDir = dirname(
  createRequire(createRequire(import.meta.url).resolve('swagger-ui-express')).resolve('swagger-ui-dist/package.json'),
);

/** The swagger-ui-dist files the page uses (source maps for devtools); nothing else of the package is served. */
const assetFiles =
  /^\/(swagger-ui\.css|swagger-ui-bundle\.js|swagger-ui-standalone-preset\.js|favicon-(16x16|32x32)\.png)(\.map)?$/;

/** Where Swagger UI is served: this path and everything below it. */
export const swaggerPathPrefix = '/swagger';

/** Metric and log label for every Swagger route: bounded, whatever the path. */
export const swaggerRouteLabel = '/swagger/*';

/**
 * CSP for the Swagger pages. Like helmet's default (script-src 'self', no
 * inline script) but without `upgrade-insecure-requests`, which would send the
 * page's requests to https on a plain-http service.
 */
export const swaggerContentSecurityPolicy = {
  useDefaults: true,
  directives: { upgradeInsecureRequests: null },
};

/**
 * The router to mount at the application root.
 * @param spec the parsed openapi.yaml (its `info.title` is the page title)
 */
export function swaggerRoutes(spec: { info?: { title?: string } }): Router {
  const router = express.Router({ caseSensitive: true, strict: true });
  const title = spec.info?.title ?? 'API';
  const page = indexHtml(title);
  const init = initScript();
  const specJson = JSON.stringify(spec);

  router.use('/swagger', (_req, res, next) => {
    res.locals.routeLabel = swaggerRouteLabel;
    next();
  });
  router.use('/swagger', helmet({ contentSecurityPolicy: swaggerContentSecurityPolicy }));
  const toIndex: RequestHandler = (req, res) => res.redirect(301, `/swagger/index.html${query(req.originalUrl)}`);
  // The pages besides the swagger-ui-dist assets, by path below /swagger; GET (and so HEAD) only.
  const pages: Record<string, RequestHandler> = {
    '': toIndex,
    '/': toIndex,
    '/index.html': (_req, res) => {
      res.type('html').set('Cache-Control', 'no-cache').send(page);
    },
    '/swagger-ui-init.js': (_req, res) => {
      res.type('application/javascript').set('Cache-Control', 'no-cache').send(init);
    },
    '/openapi.json': (_req, res) => {
      res.type('application/json').set('Cache-Control', 'no-cache').send(specJson);
    },
  };
  for (const [file, handler] of Object.entries(pages)) router.get(`/swagger${file}`, handler);
  router.get('/swagger/*asset', (req, res, next) => {
    const file = req.path.slice('/swagger'.length);
    if (!assetFiles.test(file)) return next();
    res.sendFile(join(swaggerUiDistDir, file), { maxAge: '1d', dotfiles: 'deny' });
  });
  // Another method on a page that exists is 405 with Allow (every 405 of this service carries Allow), as on the API's paths.
  router.all(['/swagger', '/swagger/', '/swagger/*rest'], (req, _res, next) => {
    const file = req.path.slice('/swagger'.length);
    if (!(Object.hasOwn(pages, file) || assetFiles.test(file))) return next();
    next(
      new AppError(405, 'method_not_allowed', `${req.method} is not allowed on ${req.path}`, { Allow: 'GET, HEAD' }),
    );
  });
  return router;
}

function query(url: string): string {
  const at = url.indexOf('?');
  return at === -1 ? '' : url.slice(at);
}

function indexHtml(title: string): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="UTF-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>${escapeHtml(title)}</title>
  <link rel="stylesheet" type="text/css" href="./swagger-ui.css">
  <link rel="icon" type="image/png" href="./favicon-32x32.png" sizes="32x32">
  <link rel="icon" type="image/png" href="./favicon-16x16.png" sizes="16x16">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="./swagger-ui-bundle.js" charset="UTF-8"></script>
  <script src="./swagger-ui-standalone-preset.js" charset="UTF-8"></script>
  <script src="./swagger-ui-init.js" charset="UTF-8"></script>
</body>
</html>
`;
}

/**
 * The page's configuration: the spec from this service, deep links, Try it out
 * and Authorize (the keys stay in the page, not in storage), no online
 * validator, no `?url=` or `?configUrl=` overrides from the address bar.
 */
function initScript(): string {
  return `window.addEventListener('load', function () {
  window.ui = SwaggerUIBundle({
    url: './openapi.json',
    dom_id: '#swagger-ui',
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: 'StandaloneLayout',
    validatorUrl: null,
    queryConfigEnabled: false,
    tryItOutEnabled: false,
    persistAuthorization: false,
    displayRequestDuration: true
  });
});
`;
}

function escapeHtml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string,
  );
}
