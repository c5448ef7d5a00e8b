// Property-based requests generated from openapi.yaml for every operation it
// declares (new operations are covered without touching this file): valid and
// mutated path parameters, query strings, headers and bodies, sent over real
// HTTP to the real service on a real database. For every request: no 5xx, the
// status is documented on the operation, the body and documented headers
// match the spec (Ajv), and a 4xx changed nothing in the database.
import { expect } from 'chai';
import fc from 'fast-check';
import { bodies, headerParameters, pathValue, queryString } from '../support/openapi-arbitraries.ts';
import { type Operation, operations, operationsOn, responseProblems } from '../support/openapi-contract.ts';
import { useTestDatabase } from '../support/postgres.ts';
import { rawRequest } from '../support/raw-http.ts';
import { startTestService, type TestService } from '../support/service.ts';

/** Requests per operation; FUZZ_RUNS raises it for a longer local run. */
const runsPerOperation = Number(process.env.FUZZ_RUNS ?? 100);
/**
 * The same requests on every run, so CI is repeatable; FUZZ_SEED=<n> replays
 * another sequence and FUZZ_SEED=random explores (a failure prints its seed).
 */
const seed = process.env.FUZZ_SEED === 'random' ? undefined : Number(process.env.FUZZ_SEED ?? 20261130);
const keys = ['fuzz-key-1', 'fuzz-key-2', 'fuzz-key-3'];

const authHeaders = fc.oneof(
  { arbitrary: fc.constantFrom(...keys).map((key) => ({ authorization: `Bearer ${key}` })), weight: 4 },
  { arbitrary: fc.constantFrom(...keys).map((key) => ({ 'x-api-key': key })), weight: 4 },
  {
    arbitrary: fc.constantFrom<Record<string, string>>(
      {},
      { authorization: 'Bearer wrong' },
      { 'x-api-key': 'wrong' },
      { authorization: 'Basic Zm9vOmJhcg==' },
      { authorization: 'Bearer' },
    ),
    weight: 1,
  },
);

function requestFor(operation: Operation) {
  const pathParameters = operation.parameters.filter((parameter) => parameter.in === 'path');
  const path = fc
    .tuple(...pathParameters.map((parameter) => pathValue(parameter)))
    .map((values) =>
      pathParameters.reduce(
        (template, parameter, index) => template.replace(`{${parameter.name}}`, values[index]!),
        operation.path,
      ),
    );
  const method = operation.method === 'GET' ? fc.constantFrom('GET', 'GET', 'HEAD') : fc.constant(operation.method);
  return fc.record({
    method,
    path,
    query: queryString(operation),
    auth: authHeaders,
    headers: headerParameters(operation),
    body: bodies(operation),
  });
}

describe('openapi.yaml-driven fuzzing over HTTP (fast-check)', function () {
  this.timeout(240_000);
  const db = useTestDatabase();
  let service: TestService;
  before(async () => {
    service = await startTestService(db().url, {
      API_KEYS: keys.join(','),
      FETCH_INTERVAL_MS: '3600000',
      // Low enough that the intake operations meet 429 late in their runs, high enough that they get 201s first.
      RATE_LIMIT_PER_MINUTE: String(Math.ceil(runsPerOperation * 0.6)),
    });
  });
  after(async () => {
    if (process.env.FUZZ_REPORT) for (const [operation, statuses] of seen) console.log(operation, [...statuses].sort());
    await service.stop();
  });

  /** What a 4xx must leave alone: the message count and every job's definition. */
  async function snapshot(): Promise<string> {
    const { rows } = await db().pool.query(
      `SELECT (SELECT count(*) FROM messages) AS messages,
              (SELECT string_agg(name || '/' || handler || '/' || interval_seconds || '/' || batch_size, ',' ORDER BY name) FROM jobs) AS jobs`,
    );
    return JSON.stringify(rows[0]);
  }

  const seen = new Map<string, Set<number>>();

  for (const operation of operations()) {
    it(`${operation.method} ${operation.path}: no 5xx, documented statuses and bodies, nothing changed on a 4xx`, async () => {
      const statuses = new Set<number>();
      seen.set(`${operation.method} ${operation.path}`, statuses);
      await fc.assert(
        fc.asyncProperty(requestFor(operation), async (request) => {
          const before = await snapshot();
          const response = await rawRequest(service.url, request.method, `${request.path}${request.query}`, {
            headers: { ...request.auth, ...request.headers, ...request.body?.headers },
            body: request.body?.bytes,
          });
          statuses.add(response.status);
          const what = `${request.method} ${request.path}${request.query} [${request.body?.kind ?? 'no body'}] -> ${response.status} ${response.text.slice(0, 300)}`;
          expect(response.status, what).to.be.below(500);
          expect(responseProblems(operation, response, { head: request.method === 'HEAD' }), what).to.deep.equal([]);
          if (response.status >= 400) expect(await snapshot(), `${what}: changed the database`).to.equal(before);
        }),
        { numRuns: runsPerOperation, endOnFailure: true, ...(seed === undefined ? {} : { seed }) },
      );
      // The generators reach past validation and auth: some request of every operation is served.
      const served = [...statuses].some((status) => status < 300 || [404, 409, 429].includes(status));
      expect(served, `statuses seen: ${[...statuses]}`).to.equal(true);
    });
  }

  it('answers a method a path does not have with a documented 405 and Allow, on every path', async () => {
    const paths = [...new Set(operations().map((operation) => operation.path))];
    for (const path of paths) {
      const declared = operationsOn(path);
      const concrete = path.replace(/\{[^}]+\}/g, 'message-sender');
      for (const method of ['DELETE', 'PUT', 'PATCH', 'POST', 'OPTIONS', 'TRACE']) {
        if (declared.some((operation) => operation.method === method)) continue;
        const response = await rawRequest(service.url, method, concrete, { headers: { 'x-api-key': keys[0]! } });
        expect(response.status, `${method} ${concrete}`).to.equal(405);
        const allow = response.headers.get('allow')!.split(', ');
        expect(allow, `${method} ${concrete}`).to.include.members(declared.map((operation) => operation.method));
        if (declared.some((operation) => operation.method === 'GET')) expect(allow).to.include('HEAD');
        for (const operation of declared)
          expect(responseProblems(operation, response), `${method} ${path}`).to.deep.equal([]);
      }
    }
  });
});
