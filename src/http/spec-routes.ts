import { readFileSync } from 'node:fs';
import { parse } from 'yaml';

/**
 * The API's routes as openapi.yaml declares them, compiled once. Everything
 * that must know a request's operation reads them: the express routes the
 * route table is mounted on, the metric `route` label, 405 with `Allow`, HEAD
 * as GET, which operations need no API key, the intake rate limit, "a
 * required body is missing" and the strict query text.
 */

const openApiPath = new URL('../../openapi.yaml', import.meta.url);

/** openapi.yaml, parsed: the one copy the app, the validator and Swagger UI are built from. */
export function loadApiSpec(): OpenApiDocument {
  return parse(readFileSync(openApiPath, 'utf8')) as OpenApiDocument;
}

/** The HTTP methods an OpenAPI path item can hold. */
const operationMethods = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;

export interface SpecOperation {
  /** The operation's `operationId`: its key in the route table. */
  operationId: string;
  /** Upper-case HTTP method. */
  method: string;
  /** The operation's effective `security` is empty: it is served without an API key (probes, metrics). */
  public: boolean;
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
  /** The operation a request (`req.method`, `req.path`) is for, or undefined. */
  operation(method: string, path: string): SpecOperation | undefined;
  /** Every route, literal segments first (`/messages/sent` before `/messages/{id}`). */
  all: SpecRoute[];
}

/** The parts of an OpenAPI 3 document the routes are compiled from (the rest is carried along untouched). */
export interface OpenApiDocument {
  info?: { title?: string };
  security?: unknown[];
  paths?: Record<string, Record<string, unknown>>;
  components?: Record<string, Record<string, unknown>>;
}

interface OperationLike {
  operationId?: string;
  security?: unknown[];
  requestBody?: { required?: boolean };
  parameters?: ParameterLike[];
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
 * @throws Error when an operation has no `operationId`
 */
export function compileSpecRoutes(spec: OpenApiDocument): SpecRoutes {
  const compiled = Object.entries(spec.paths ?? {}).map(([template, item]) => {
    const operations = new Map<string, SpecOperation>();
    const shared = (item.parameters ?? []) as ParameterLike[];
    for (const method of operationMethods) {
      const operation = item[method] as OperationLike | undefined;
      if (operation) operations.set(method.toUpperCase(), compileOperation(spec, method, template, operation, shared));
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
  const match = (path: string) => compiled.find((entry) => entry.pattern.test(path))?.route;
  return {
    all: compiled.map((entry) => entry.route),
    match,
    operation: (method, path) => match(path)?.operations.get(method),
  };
}

function compileOperation(
  spec: OpenApiDocument,
  method: string,
  template: string,
  operation: OperationLike,
  shared: ParameterLike[],
): SpecOperation {
  if (!operation.operationId) throw new Error(`openapi.yaml: ${method} ${template} has no operationId`);
  const query = new Map<string, string | undefined>();
  for (const raw of [...shared, ...(operation.parameters ?? [])]) {
    const parameter = resolve(spec, raw);
    if (parameter?.in === 'query' && parameter.name) {
      query.set(parameter.name, resolve(spec, parameter.schema ?? {})?.type);
    }
  }
  return {
    operationId: operation.operationId,
    method: method.toUpperCase(),
    public: (operation.security ?? spec.security ?? []).length === 0,
    bodyRequired: operation.requestBody?.required === true,
    hasBody: operation.requestBody !== undefined,
    query,
  };
}

/** Follows local `$ref`s (`#/components/parameters/Limit`). */
function resolve<T extends { $ref?: string }>(spec: OpenApiDocument, node: T | undefined): T | undefined {
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
