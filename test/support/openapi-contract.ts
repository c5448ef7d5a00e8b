// openapi.yaml as a test oracle: its operations, the statuses each documents,
// and a real JSON-schema validator (Ajv, the one express-openapi-validator
// uses) for response bodies and documented headers.
import { readFileSync } from 'node:fs';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { parse } from 'yaml';

const specPath = new URL('../../openapi.yaml', import.meta.url);
const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export interface Operation {
  method: string; // upper case
  path: string; // template
  operationId: string;
  spec: JsonObject;
  parameters: JsonObject[];
  /** Schema of the application/json request body, if any. */
  bodySchema: JsonObject | undefined;
  bodyRequired: boolean;
  /** Documented statuses, e.g. ['200', '400', …]. */
  statuses: string[];
}

export const spec = parse(readFileSync(specPath, 'utf8')) as JsonObject;

/** Follows `$ref`s inside openapi.yaml. */
export function deref<T = JsonObject>(node: unknown): T {
  let current = node as JsonObject;
  while (current && typeof current.$ref === 'string') {
    current = (current.$ref as string)
      .replace(/^#\//, '')
      .split('/')
      .reduce<Json>((at, key) => (at as JsonObject)[key] as Json, spec) as JsonObject;
  }
  return current as T;
}

const methods = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace'];

/** Every operation of openapi.yaml, read afresh, so new operations are covered without a change here. */
export function operations(): Operation[] {
  const result: Operation[] = [];
  for (const [path, rawItem] of Object.entries(spec.paths as JsonObject)) {
    const item = rawItem as JsonObject;
    for (const method of methods) {
      const operation = item[method] as JsonObject | undefined;
      if (!operation) continue;
      const parameters = [...((item.parameters as Json[]) ?? []), ...((operation.parameters as Json[]) ?? [])].map(
        (parameter) => deref(parameter),
      );
      const body = operation.requestBody ? deref(operation.requestBody) : undefined;
      const media = body ? ((body.content as JsonObject)['application/json'] as JsonObject | undefined) : undefined;
      result.push({
        method: method.toUpperCase(),
        path,
        operationId: String(operation.operationId),
        spec: operation,
        parameters,
        bodySchema: media?.schema as JsonObject | undefined,
        bodyRequired: body?.required === true,
        statuses: Object.keys(operation.responses as JsonObject),
      });
    }
  }
  return result;
}

/** The operations on one path template. */
export function operationsOn(path: string): Operation[] {
  return operations().filter((operation) => operation.path === path);
}

const ajv = new Ajv({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addSchema({ ...(spec as object), $id: 'openapi.yaml' });
const compiled = new Map<string, ValidateFunction>();

function validatorFor(schema: JsonObject): ValidateFunction {
  const key = JSON.stringify(schema);
  let validate = compiled.get(key);
  if (!validate) {
    // Local refs ("#/components/…") are resolved inside openapi.yaml.
    const rebased = JSON.parse(key.replace(/"#\//g, '"openapi.yaml#/'));
    validate = ajv.compile(rebased);
    compiled.set(key, validate);
  }
  return validate;
}

/**
 * Problems with a response to `operation` (empty when it conforms): the
 * status must be documented, a JSON body must match the documented schema,
 * and the headers the documented response marks `required` must be present.
 */
export function responseProblems(
  operation: Operation,
  response: { status: number; headers: Headers; text: string },
  options: { head?: boolean } = {},
): string[] {
  const where = `${operation.method} ${operation.path} -> ${response.status}`;
  const documented = (operation.spec.responses as JsonObject)[String(response.status)];
  if (!documented) return [`${where}: status not documented (documented: ${operation.statuses.join(', ')})`];
  const shape = deref(documented);
  const problems: string[] = [];
  for (const [header, declared] of Object.entries((shape.headers as JsonObject) ?? {})) {
    if (deref(declared).required === true && !response.headers.has(header)) {
      problems.push(`${where}: required header ${header} missing`);
    }
  }
  if (options.head) {
    if (response.text !== '') problems.push(`${where}: HEAD answered with a body`);
    return problems;
  }
  const content = shape.content as JsonObject | undefined;
  const json = content?.['application/json'] as JsonObject | undefined;
  if (json?.schema) {
    if (!/^application\/json/.test(response.headers.get('content-type') ?? '')) {
      problems.push(`${where}: content-type ${response.headers.get('content-type')} is not application/json`);
      return problems;
    }
    let body: unknown;
    try {
      body = JSON.parse(response.text);
    } catch {
      return [...problems, `${where}: body is not JSON: ${response.text.slice(0, 200)}`];
    }
    const validate = validatorFor(json.schema as JsonObject);
    if (!validate(body)) {
      problems.push(
        `${where}: body does not match the spec: ${ajv.errorsText(validate.errors)}; body ${response.text.slice(0, 300)}`,
      );
    }
  }
  return problems;
}
