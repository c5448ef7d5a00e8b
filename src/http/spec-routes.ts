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
  /** Query parameters by name, with the JSON type their schema names (`integer`, `string` …). */
  query: Map<string, string | undefined>;
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
  paths?: Record<string, Record<string, unknown>>;
  components?: Record<string, Record<string, unknown>>;
}

interface ParameterLike {
  $ref?: string;
  name?: string;
  in?: string;
  schema?: { type?: string; $ref?: string };
}

/**
 * Compiles `spec.paths`. A template's `{param}` matches one non-empty path
 * segment; literal segments win over parameters (`/messages/sent` before
 * `/messages/{id}`); one trailing slash is tolerated, as express does.
 */
export function compileSpecRoutes(spec: OpenApiLike): SpecRoutes {
  const compiled = Object.entries(spec.paths ?? {}).map(([template, item]) => {
    const operations = new Map<string, SpecOperation>();
    const shared = (item.parameters ?? []) as ParameterLike[];
    for (const method of operationMethods) {
      const operation = item[method] as
        | { requestBody?: { required?: boolean }; parameters?: ParameterLike[] }
        | undefined;
      if (!operation) continue;
      const query = new Map<string, string | undefined>();
      for (const raw of [...shared, ...(operation.parameters ?? [])]) {
        const parameter = resolve(spec, raw);
        if (parameter?.in === 'query' && parameter.name) {
          query.set(parameter.name, resolve(spec, parameter.schema ?? {})?.type);
        }
      }
      operations.set(method.toUpperCase(), {
        bodyRequired: operation.requestBody?.required === true,
        hasBody: operation.requestBody !== undefined,
        query,
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

/** Follows local `$ref`s (`#/components/parameters/Limit`). */
function resolve<T extends { $ref?: string }>(spec: OpenApiLike, node: T | undefined): T | undefined {
  let current: unknown = node;
  for (let hops = 0; hops < 16 && typeof (current as T | undefined)?.$ref === 'string'; hops++) {
    const path = (current as T).$ref!.replace(/^#\//, '').split('/');
    current = path.reduce<unknown>((at, key) => (at as Record<string, unknown> | undefined)?.[key], spec);
  }
  return current as T | undefined;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
