/**
 * The API's routes as openapi.yaml declares them, compiled once for the parts
 * of the app that must know a request's operation before (or without) the
 * OpenAPI validator: the metric `route` label, 405 with `Allow`, HEAD as GET,
 * and "a required body is missing".
 */

/** The HTTP methods an OpenAPI path item can hold. */
const operationMethods = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;

export interface SpecOperation {
  /** `requestBody.required` of the operation. */
  bodyRequired: boolean;
  /** The operation accepts a request body at all. */
  hasBody: boolean;
}

export interface SpecRoute {
  /** The OpenAPI path template, e.g. `/jobs/{name}`. */
  template: string;
  /** Upper-case method -> operation. */
  operations: Map<string, SpecOperation>;
  /** The `Allow` header value: the path's methods, plus HEAD where GET is served. */
  allow: string;
}

export interface SpecRoutes {
  /** The route whose template matches a raw request path (`req.path`), or undefined. */
  match(path: string): SpecRoute | undefined;
  all: SpecRoute[];
}

interface OpenApiLike {
  paths?: Record<string, Record<string, { requestBody?: { required?: boolean } } | unknown>>;
}

/**
 * Compiles `spec.paths`. A template's `{param}` matches one non-empty path
 * segment; literal segments win over parameters (`/messages/sent` before
 * `/messages/{id}`); one trailing slash is tolerated, as express does.
 */
export function compileSpecRoutes(spec: OpenApiLike): SpecRoutes {
  const compiled = Object.entries(spec.paths ?? {}).map(([template, item]) => {
    const operations = new Map<string, SpecOperation>();
    for (const method of operationMethods) {
      const operation = (item as Record<string, unknown>)[method] as
        | { requestBody?: { required?: boolean } }
        | undefined;
      if (!operation) continue;
      operations.set(method.toUpperCase(), {
        bodyRequired: operation.requestBody?.required === true,
        hasBody: operation.requestBody !== undefined,
      });
    }
    const methods = [...operations.keys()];
    if (operations.has('GET') && !operations.has('HEAD')) methods.push('HEAD');
    const segments = template.split('/').filter(Boolean);
    const pattern = new RegExp(
      `^/${segments.map((segment) => (/^\{[^}]+\}$/.test(segment) ? '[^/]+' : escapeRegExp(segment))).join('/')}/?$`,
    );
    const literalCount = segments.filter((segment) => !segment.startsWith('{')).length;
    return { route: { template, operations, allow: methods.join(', ') }, pattern, literalCount, segments };
  });
  compiled.sort((a, b) => b.literalCount - a.literalCount || b.segments.length - a.segments.length);
  return {
    all: compiled.map((entry) => entry.route),
    match(path) {
      return compiled.find((entry) => entry.pattern.test(path))?.route;
    },
  };
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
