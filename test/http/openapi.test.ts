import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import type { NextFunction, Request, Response } from 'express';
import express from 'express';
import OpenApiValidator from 'express-openapi-validator';
import { parse } from 'yaml';

const specPath = new URL('../../openapi.yaml', import.meta.url);

/**
 * Every operation of the HTTP API, plus `GET /messages`
 * (operators' list by status, issue 4). `GET /swagger/index.html` is left out
 * on purpose: it serves the UI over this document and is not part of the API.
 */
const expectedOperations: Record<string, string[]> = {
  '/jobs/start': ['put'],
  '/jobs/stop': ['put'],
  '/jobs': ['get', 'post'],
  '/jobs/{name}': ['get', 'patch'],
  '/messages': ['get', 'post'],
  '/messages/batch': ['post'],
  '/messages/sent': ['get'],
  '/messages/{id}': ['get'],
  '/messages/{id}/attempts': ['get'],
  '/messages/{id}/cancel': ['post'],
  '/messages/{id}/retry': ['post'],
  '/messages/retry-failed': ['post'],
  '/health-alive': ['get'],
  '/health-check': ['get'],
  '/metrics': ['get'],
  '/console': ['get'],
};

const httpMethods = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function resolvePointer(document: Json, ref: string): Json | undefined {
  if (!ref.startsWith('#/')) return undefined;
  let node: Json | undefined = document;
  for (const raw of ref.slice(2).split('/')) {
    const key = decodeURIComponent(raw).replaceAll('~1', '/').replaceAll('~0', '~');
    if (!isObject(node) || !(key in node)) return undefined;
    node = node[key];
  }
  return node;
}

function collectRefs(node: Json, found: string[] = []): string[] {
  if (Array.isArray(node)) for (const item of node) collectRefs(item, found);
  else if (isObject(node)) {
    for (const [key, value] of Object.entries(node)) {
      if (key === '$ref' && typeof value === 'string') found.push(value);
      else collectRefs(value, found);
    }
  }
  return found;
}

function deref(document: Json, node: Json | undefined): Json | undefined {
  let current = node;
  while (isObject(current) && typeof current.$ref === 'string') current = resolvePointer(document, current.$ref);
  return current;
}

/** Object schemas reachable from `schema` through properties and array items. */
function objectSchemasWithin(
  document: Json,
  schema: Json | undefined,
  path: string,
  out: Array<[string, JsonObject]> = [],
) {
  const resolved = deref(document, schema);
  if (!isObject(resolved)) return out;
  if (resolved.type === 'object') {
    out.push([path, resolved]);
    if (isObject(resolved.properties)) {
      for (const [name, property] of Object.entries(resolved.properties)) {
        objectSchemasWithin(document, property, `${path}.${name}`, out);
      }
    }
  }
  if (resolved.type === 'array') objectSchemasWithin(document, resolved.items, `${path}[]`, out);
  return out;
}

function operationsOf(spec: JsonObject): Array<[string, string, JsonObject]> {
  const result: Array<[string, string, JsonObject]> = [];
  for (const [path, item] of Object.entries(spec.paths as JsonObject)) {
    for (const method of httpMethods) {
      const operation = (item as JsonObject)[method];
      if (isObject(operation)) result.push([path, method, operation]);
    }
  }
  return result;
}

describe('openapi.yaml', () => {
  const spec = parse(readFileSync(specPath, 'utf8')) as JsonObject;

  it('is OpenAPI 3.0.3', () => {
    expect(spec.openapi).to.equal('3.0.3');
    expect(spec.info).to.have.property('title');
  });

  it('has exactly the paths and methods of the design', () => {
    const actual: Record<string, string[]> = {};
    for (const [path, method] of operationsOf(spec)) actual[path] = [...(actual[path] ?? []), method];
    for (const methods of Object.values(actual)) methods.sort();
    const expected = Object.fromEntries(
      Object.entries(expectedOperations).map(([path, methods]) => [path, [...methods].sort()]),
    );
    expect(actual).to.deep.equal(expected);
  });

  it('resolves every $ref', () => {
    const refs = collectRefs(spec);
    expect(refs.length).to.be.greaterThan(20);
    const broken = refs.filter((ref) => resolvePointer(spec, ref) === undefined);
    expect(broken, 'unresolved $refs').to.deep.equal([]);
  });

  it('gives every operation a unique operationId, a summary, declared tags and responses', () => {
    const declaredTags = (spec.tags as JsonObject[]).map((tag) => tag.name);
    const ids = new Set<string>();
    for (const [path, method, operation] of operationsOf(spec)) {
      const where = `${method.toUpperCase()} ${path}`;
      expect(operation.operationId, where).to.be.a('string');
      expect(ids.has(operation.operationId as string), `${where} duplicate operationId`).to.equal(false);
      ids.add(operation.operationId as string);
      expect(operation.summary, where).to.be.a('string').and.not.empty;
      expect(operation.tags, where).to.be.an('array').that.is.not.empty;
      for (const tag of operation.tags as string[]) expect(declaredTags, where).to.include(tag);
      expect(Object.keys(operation.responses as JsonObject), where).to.not.be.empty;
    }
  });

  it('documents every error response with the shared Error shape', () => {
    for (const [path, method, operation] of operationsOf(spec)) {
      for (const [status, response] of Object.entries(operation.responses as JsonObject)) {
        if (Number(status) < 400 || path === '/health-check') continue;
        const where = `${method.toUpperCase()} ${path} ${status}`;
        expect(response, where)
          .to.have.property('$ref')
          .that.matches(/^#\/components\/responses\//);
        const shared = deref(spec, response) as JsonObject;
        const content = shared.content as JsonObject;
        const media = content['application/json'] as JsonObject;
        expect(media.schema, where).to.deep.equal({ $ref: '#/components/schemas/Error' });
      }
    }
  });

  it('declares additionalProperties: false on every request body object', () => {
    for (const [path, method, operation] of operationsOf(spec)) {
      const body = deref(spec, operation.requestBody) as JsonObject | undefined;
      if (!body) continue;
      const media = (body.content as JsonObject)['application/json'] as JsonObject;
      const objects = objectSchemasWithin(spec, media.schema, `${method.toUpperCase()} ${path} body`);
      expect(objects, `${method} ${path}`).to.not.be.empty;
      for (const [where, schema] of objects) expect(schema.additionalProperties, where).to.equal(false);
    }
  });

  it('declares bearer and X-API-Key schemes on the job and message operations, none on health and metrics', () => {
    const schemes = (spec.components as JsonObject).securitySchemes as JsonObject;
    expect(schemes.bearerAuth).to.include({ type: 'http', scheme: 'bearer' });
    expect(schemes.apiKeyHeader).to.include({ type: 'apiKey', in: 'header', name: 'X-API-Key' });
    for (const [path, method, operation] of operationsOf(spec)) {
      const effective = operation.security ?? spec.security;
      if (/^\/(jobs|messages)/.test(path)) {
        expect(effective, `${method} ${path}`).to.deep.equal([{ bearerAuth: [] }, { apiKeyHeader: [] }]);
      } else {
        expect(effective, `${method} ${path}`).to.deep.equal([]);
      }
    }
  });

  describe('with express-openapi-validator', () => {
    let server: Server;
    let baseUrl: string;

    before(async () => {
      const app = express();
      app.use(express.json());
      app.use(
        // As in src/http/app.ts: keys are checked by the app (optional by configuration), not by the validator.
        OpenApiValidator.middleware({
          apiSpec: specPath.pathname,
          validateRequests: true,
          validateResponses: false,
          validateSecurity: false,
        }),
      );
      app.use((_request: Request, response: Response) => {
        response.json({ passed: true });
      });
      app.use(
        (error: { status?: number; message?: string }, _request: Request, response: Response, _next: NextFunction) => {
          response.status(error.status ?? 500).json({ error: { code: 'validation_error', message: error.message } });
        },
      );
      server = await new Promise<Server>((resolve) => {
        const listening = app.listen(0, '127.0.0.1', () => resolve(listening));
      });
      baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });

    after(async () => {
      await new Promise((resolve) => server.close(resolve));
    });

    async function statusOf(method: string, path: string, body?: unknown): Promise<number> {
      const response = await fetch(`${baseUrl}${path}`, {
        method,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      await response.arrayBuffer();
      return response.status;
    }

    const message = { to: '+905551111111', content: 'hello' };
    const uuid = '0f8fad5b-d9cb-469f-a165-70867728950e';
    // [method, path, body, expected status, what the case shows]
    const cases: Array<[string, string, unknown, number, string]> = [
      ['PUT', '/jobs/start', undefined, 200, 'start without a body'],
      ['PUT', '/jobs/start', { name: 'message-sender' }, 200, 'start one job'],
      ['PUT', '/jobs/stop', {}, 200, 'stop with an empty body'],
      ['PUT', '/jobs/start', { name: '' }, 400, 'empty job name'],
      ['PUT', '/jobs/start', { name: 'Not A Name' }, 200, 'any other text names a job to look up (unknown: 404)'],
      ['PUT', '/jobs/stop', { name: 'x', force: true }, 400, 'unknown property in a selector'],
      ['GET', '/jobs', undefined, 200, "list jobs (keys are the app's to check)"],
      ['GET', '/jobs/message-sender', undefined, 200, 'read one job'],
      [
        'POST',
        '/jobs',
        { name: 'bulk', handler: 'send-messages', intervalSeconds: 1, batchSize: 50, active: true },
        200,
        'create a job',
      ],
      [
        'POST',
        '/jobs',
        { name: 'bulk', handler: 'send-messages', intervalSeconds: 0, batchSize: 50 },
        400,
        'interval below 1',
      ],
      [
        'POST',
        '/jobs',
        { name: 'bulk', handler: 'send-messages', intervalSeconds: 86401, batchSize: 50 },
        400,
        'interval above a day',
      ],
      ['POST', '/jobs', { name: 'bulk', handler: 'send-messages', intervalSeconds: 10 }, 400, 'batchSize missing'],
      ['PATCH', '/jobs/message-sender', { batchSize: 5 }, 200, 'change the batch size'],
      ['PATCH', '/jobs/message-sender', {}, 400, 'empty change'],
      ['PATCH', '/jobs/message-sender', { batchSize: 10001 }, 400, 'batch size above 10000'],
      ['POST', '/messages', message, 200, 'queue a message'],
      ['POST', '/messages', { to: '+905551111111' }, 400, 'content missing'],
      ['POST', '/messages', { ...message, priority: 1 }, 400, 'unknown property in a message'],
      ['POST', '/messages', { ...message, to: '+'.padEnd(33, '1') }, 400, 'to longer than 32'],
      ['POST', '/messages/batch', { messages: [message, message] }, 200, 'queue a batch'],
      ['POST', '/messages/batch', { messages: [] }, 400, 'empty batch'],
      ['POST', '/messages/batch', { messages: Array.from({ length: 1001 }, () => message) }, 400, 'batch of 1001'],
      [
        'POST',
        '/messages/batch',
        { messages: [message, { ...message, extra: 1 }] },
        400,
        'unknown property inside a batch item',
      ],
      ['GET', '/messages/sent', undefined, 200, 'sent list is not taken for /messages/{id}'],
      ['GET', '/messages/sent?limit=100&cursor=abc', undefined, 200, 'largest page with a cursor'],
      ['GET', '/messages/sent?limit=0', undefined, 400, 'limit below 1'],
      ['GET', '/messages/sent?limit=101', undefined, 400, 'limit above 100'],
      ['GET', '/messages', undefined, 200, 'status is optional'],
      ['GET', '/messages?status=failed&limit=5', undefined, 200, 'list failed messages'],
      ['GET', '/messages?status=lost', undefined, 400, 'unknown status'],
      ['GET', `/messages/${uuid}`, undefined, 200, 'read one message'],
      ['GET', '/messages/not-a-uuid', undefined, 400, 'message id that is not a uuid'],
      ['GET', `/messages/${uuid}/attempts`, undefined, 200, "a message's attempts"],
      ['GET', `/messages/${uuid}/attempts?limit=100&cursor=abc`, undefined, 200, 'largest page of attempts'],
      ['GET', `/messages/${uuid}/attempts?limit=0`, undefined, 400, 'attempts limit below 1'],
      ['GET', '/messages/not-a-uuid/attempts', undefined, 400, 'attempts of an id that is not a uuid'],
      ['GET', '/health-alive', undefined, 200, 'liveness'],
      ['GET', '/health-check', undefined, 200, 'readiness'],
      ['GET', '/metrics', undefined, 200, 'metrics'],
      ['GET', '/console', undefined, 200, 'the operator console page'],
      ['GET', '/nowhere', undefined, 404, 'unknown path'],
      ['DELETE', '/jobs', undefined, 405, 'unknown method on a known path'],
    ];

    for (const [method, path, body, expected, what] of cases) {
      it(`${method} ${path} -> ${expected} (${what})`, async () => {
        expect(await statusOf(method, path, body)).to.equal(expected);
      });
    }
  });
});
