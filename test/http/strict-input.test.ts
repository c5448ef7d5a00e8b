// Issue 10, points 3 to 6, each with the exact input of the report: invalid
// Unicode, crafted input that used to answer 500, coerced JSON types, and
// statuses the spec did not list. Every answer is checked against openapi.yaml.
import { gzipSync } from 'node:zlib';
import { expect } from 'chai';
import { operations, responseProblems } from '../support/openapi-contract.ts';
import { useTestDatabase } from '../support/postgres.ts';
import { type RawResponse, rawRequest } from '../support/raw-http.ts';
import { startTestService, type TestService } from '../support/service.ts';

const json = { 'content-type': 'application/json' };
const cursorOf = (timestamp: string) =>
  Buffer.from(JSON.stringify([timestamp, '0f8fad5b-d9cb-469f-a165-70867728950e'])).toString('base64url');

describe('strict input at the edge (issue 10, points 3-6)', () => {
  const db = useTestDatabase();
  let service: TestService;
  before(async () => {
    service = await startTestService(db().url, { FETCH_INTERVAL_MS: '3600000' });
    await rawRequest(service.url, 'PUT', '/jobs/stop');
  });
  after(() => service.stop());

  const send = (method: string, path: string, body?: Buffer | string, headers: Record<string, string> = json) =>
    rawRequest(service.url, method, path, { body, headers: body === undefined ? {} : headers });
  const errorOf = (response: RawResponse) => JSON.parse(response.text).error as { code: string; message: string };
  const messageCount = async () => Number((await db().pool.query('SELECT count(*) AS n FROM messages')).rows[0].n);

  /** The answer is documented on the operation that `method path` names, body and headers included. */
  function expectDocumented(method: string, template: string, response: RawResponse) {
    const operation = operations().find((candidate) => candidate.method === method && candidate.path === template)!;
    expect(responseProblems(operation, response, { head: method === 'HEAD' })).to.deep.equal([]);
  }

  describe('3. invalid Unicode is refused, never replaced', () => {
    it('answers 400 invalid_content to a lone surrogate escape in content, storing nothing', async () => {
      const before = await messageCount();
      const response = await send('POST', '/messages', '{"to":"+905551111111","content":"ab\\ud83dcd"}');
      expect(response.status).to.equal(400);
      expect(errorOf(response)).to.deep.equal({
        code: 'invalid_content',
        message: 'content is not valid Unicode: it contains a lone surrogate (an unpaired \\uD800-\\uDFFF)',
      });
      expectDocumented('POST', '/messages', response);
      expect(await messageCount()).to.equal(before);
    });

    it('answers 400 invalid_content to raw invalid UTF-8 bytes in content, storing nothing', async () => {
      const before = await messageCount();
      const body = Buffer.concat([
        Buffer.from('{"to":"+905551111111","content":"ab'),
        Buffer.from([0xff]),
        Buffer.from('cd"}'),
      ]);
      const response = await send('POST', '/messages', body);
      expect(response.status).to.equal(400);
      expect(errorOf(response).code).to.equal('invalid_content');
      expect(errorOf(response).message).to.equal(
        'content is not valid Unicode: it contains bytes that are not valid UTF-8',
      );
      expect(await messageCount()).to.equal(before);
    });

    it('stores none of a 1,000-message batch with one lone surrogate or one invalid byte, naming the index', async () => {
      const before = await messageCount();
      const messages = Array.from(
        { length: 1000 },
        (_, index) => `{"to":"+905551111111","content":"message ${index}"}`,
      );
      const withSurrogate = [...messages];
      withSurrogate[737] = '{"to":"+905551111111","content":"ab\\udc00cd"}';
      const surrogate = await send('POST', '/messages/batch', `{"messages":[${withSurrogate.join(',')}]}`);
      expect(surrogate.status).to.equal(400);
      expect(errorOf(surrogate)).to.include({ code: 'invalid_content' });
      expect(errorOf(surrogate).message).to.match(/^messages\[737\]\.content is not valid Unicode/);
      const invalidByte = Buffer.concat([
        Buffer.from(`{"messages":[${messages.slice(0, 999).join(',')},{"to":"+905551111111","content":"x`),
        Buffer.from([0xc3, 0x28]),
        Buffer.from('"}]}'),
      ]);
      const bytes = await send('POST', '/messages/batch', invalidByte);
      expect(bytes.status).to.equal(400);
      expect(errorOf(bytes).message).to.match(/^messages\[999\]\.content is not valid Unicode/);
      expectDocumented('POST', '/messages/batch', bytes);
      expect(await messageCount()).to.equal(before);
      // The same batch without the bad one is stored whole.
      const good = await send('POST', '/messages/batch', `{"messages":[${messages.join(',')}]}`);
      expect(good.status).to.equal(201);
      expect(await messageCount()).to.equal(before + 1000);
    });

    it('refuses invalid text in other fields, path parameters and query strings with a clear code', async () => {
      const cases: Array<[string, string, string | undefined, number, string]> = [
        ['PUT', '/jobs/start', '{"name":"\\ud800"}', 400, 'invalid_unicode'],
        ['POST', '/messages', '{"to":"+90555\\udfff","content":"x"}', 400, 'invalid_unicode'],
        ['GET', '/jobs/%ff', undefined, 400, 'invalid_unicode'],
        ['GET', '/messages/%ed%a0%80', undefined, 400, 'invalid_unicode'],
        ['GET', '/messages?status=%ff', undefined, 400, 'invalid_unicode'],
        ['GET', '/messages/sent?cursor=%c3', undefined, 400, 'invalid_unicode'],
        ['GET', '/jobs/%zz', undefined, 400, 'invalid_url'],
      ];
      for (const [method, path, body, status, code] of cases) {
        const response = await send(method, path, body);
        expect(response.status, `${method} ${path}`).to.equal(status);
        expect(errorOf(response).code, `${method} ${path}`).to.equal(code);
      }
    });
  });

  describe('4. crafted input is a 400, never a 500', () => {
    it('refuses cursors with impossible timestamps on both listings', async () => {
      for (const timestamp of [
        '2025-13-01 00:00:00+00',
        '0000-01-01 00:00:00+00',
        '2025-02-30 00:00:00+00',
        '2025-01-01 00:00:00+99',
      ]) {
        for (const path of [
          `/messages/sent?cursor=${cursorOf(timestamp)}`,
          `/messages?status=sent&cursor=${cursorOf(timestamp)}`,
        ]) {
          const response = await send('GET', path);
          expect(response.status, `${timestamp} ${path}`).to.equal(400);
          expect(errorOf(response), timestamp).to.deep.equal({
            code: 'invalid_cursor',
            message: 'cursor is not one this API returned',
          });
        }
      }
    });

    it('refuses limit=1e309, Infinity and 1.5', async () => {
      for (const limit of ['1e309', 'Infinity', '1.5', '-Infinity', 'NaN', '0x10']) {
        for (const path of ['/messages/sent', '/messages']) {
          const response = await send('GET', `${path}?limit=${limit}`);
          expect(response.status, `${path} ${limit}`).to.equal(400);
          expect(errorOf(response)).to.deep.equal({
            code: 'validation_failed',
            message: 'limit: must be a whole number written in digits',
          });
          expectDocumented('GET', path, response);
        }
      }
      expect((await send('GET', '/messages/sent?limit=100')).status).to.equal(200);
    });

    it('keeps body-parser 4xx: a body that is not gzip, an unknown encoding, a foreign charset, too large', async () => {
      const before = await messageCount();
      const badGzip = await send('POST', '/messages', 'not gzip', { ...json, 'content-encoding': 'gzip' });
      expect(badGzip.status).to.equal(400);
      expect(errorOf(badGzip)).to.deep.equal({
        code: 'invalid_content_encoding',
        message: 'request body is not valid gzip data',
      });
      expectDocumented('POST', '/messages', badGzip);
      const unknown = await send('POST', '/messages', '{}', { ...json, 'content-encoding': 'snappy' });
      expect(unknown.status).to.equal(415);
      expect(errorOf(unknown).code).to.equal('unsupported_content_encoding');
      expectDocumented('POST', '/messages', unknown);
      const latin1 = await send('POST', '/messages', '{"to":"+905551111111","content":"x"}', {
        'content-type': 'application/json; charset=latin1',
      });
      expect(latin1.status).to.equal(415);
      expect(errorOf(latin1).code).to.equal('unsupported_charset');
      // A gzip bomb is measured after decompression: 3 MB of zeros in a few KB of gzip.
      const bomb = gzipSync(`{"to":"+905551111111","content":"${'0'.repeat(3 * 1024 * 1024)}"}`);
      const tooLarge = await send('POST', '/messages', bomb, { ...json, 'content-encoding': 'gzip' });
      expect(tooLarge.status).to.equal(413);
      expectDocumented('POST', '/messages', tooLarge);
      const gzipped = await send('POST', '/messages', gzipSync('{"to":"+905551111111","content":"zipped"}'), {
        ...json,
        'content-encoding': 'gzip',
      });
      expect(gzipped.status).to.equal(201);
      expect(await messageCount()).to.equal(before + 1);
    });
  });

  describe('5. JSON types are never coerced', () => {
    it('answers 400 to a boolean interval, a number content, a string active and a boolean name', async () => {
      const jobsBefore = (await db().pool.query('SELECT count(*) AS n FROM jobs')).rows[0].n;
      const messagesBefore = await messageCount();
      const cases: Array<[string, string, string, string]> = [
        [
          'POST',
          '/jobs',
          '{"name":"coerced-1","handler":"send-messages","intervalSeconds":true,"batchSize":1}',
          'intervalSeconds: must be integer',
        ],
        ['POST', '/messages', '{"to":"+905551111111","content":123}', 'content: must be string'],
        [
          'POST',
          '/jobs',
          '{"name":"coerced-2","handler":"send-messages","intervalSeconds":1,"batchSize":1,"active":"true"}',
          'active: must be boolean',
        ],
        ['PUT', '/jobs/stop', '{"name":false}', 'name: must be string'],
        ['PATCH', '/jobs/message-sender', '{"batchSize":"5"}', 'batchSize: must be integer'],
        ['POST', '/messages', '{"to":905551111111,"content":"x"}', 'to: must be string'],
      ];
      for (const [method, path, body, message] of cases) {
        const response = await send(method, path, body);
        expect(response.status, body).to.equal(400);
        expect(errorOf(response), body).to.deep.equal({ code: 'validation_failed', message });
      }
      expect((await db().pool.query('SELECT count(*) AS n FROM jobs')).rows[0].n).to.equal(jobsBefore);
      expect(await messageCount()).to.equal(messagesBefore);
      const job = (await db().pool.query(`SELECT batch_size, status FROM jobs WHERE name = 'message-sender'`)).rows[0];
      expect(job).to.deep.equal({ batch_size: 2, status: 'inactive' });
    });
  });

  describe('6. every status is documented', () => {
    it('answers a missing required body with 400 missing_body, not 415 "unsupported media type undefined"', async () => {
      for (const [method, path] of [
        ['POST', '/messages'],
        ['POST', '/messages/batch'],
        ['POST', '/jobs'],
        ['PATCH', '/jobs/message-sender'],
      ] as const) {
        const response = await send(method, path);
        expect(response.status, `${method} ${path}`).to.equal(400);
        expect(errorOf(response)).to.deep.equal({
          code: 'missing_body',
          message: 'request body is required: a JSON object with Content-Type: application/json',
        });
      }
      const empty = await send('POST', '/messages', '', json);
      expect(errorOf(empty).code).to.equal('missing_body');
      const wrongType = await send('POST', '/messages', '{"to":"+905551111111","content":"x"}', {
        'content-type': 'text/plain',
      });
      expect(wrongType.status).to.equal(415);
      expect(errorOf(wrongType)).to.deep.equal({
        code: 'unsupported_media_type',
        message: 'Content-Type must be application/json (got "text/plain")',
      });
      expectDocumented('POST', '/messages', wrongType);
      // An optional body may be left out.
      expect((await send('PUT', '/jobs/stop')).status).to.equal(200);
    });

    it('serves HEAD wherever GET is served: same status and headers, no body', async () => {
      const gets = operations().filter((operation) => operation.method === 'GET');
      expect(gets.length).to.be.greaterThan(5);
      for (const operation of gets) {
        const path = operation.path
          .replace('{name}', 'message-sender')
          .replace('{id}', '0f8fad5b-d9cb-469f-a165-70867728950e');
        const get = await send('GET', path);
        const head = await send('HEAD', path);
        expect(head.status, `HEAD ${path}`).to.equal(get.status);
        expect(head.text, `HEAD ${path}`).to.equal('');
        expect(head.headers.get('content-type'), `HEAD ${path}`).to.equal(get.headers.get('content-type'));
        expect(responseProblems({ ...operation, method: 'GET' }, head, { head: true })).to.deep.equal([]);
      }
      expect((await send('HEAD', '/jobs')).status).to.equal(200);
    });

    it('answers a conditional GET (If-None-Match) with a status documented on the operation', async () => {
      // A 304 would be a status no operation documents (every status an operation can answer is documented in openapi.yaml).
      for (const operation of operations().filter((each) => each.method === 'GET')) {
        const path = operation.path
          .replace('{name}', 'message-sender')
          .replace('{id}', '0f8fad5b-d9cb-469f-a165-70867728950e');
        const first = await send('GET', path);
        for (const tag of [first.headers.get('etag'), '*']) {
          if (tag === null) continue;
          for (const method of ['GET', 'HEAD']) {
            const again = await rawRequest(service.url, method, path, { headers: { 'if-none-match': tag } });
            expect(operation.statuses, `${method} ${path} If-None-Match: ${tag}`).to.include(String(again.status));
          }
        }
      }
    });

    it('answers 405 with Allow, documented', async () => {
      const response = await send('DELETE', '/jobs');
      expect(response.status).to.equal(405);
      expect(response.headers.get('allow')).to.equal('GET, POST, HEAD');
      expect(errorOf(response)).to.deep.equal({
        code: 'method_not_allowed',
        message: 'DELETE is not allowed on /jobs',
      });
      expectDocumented('GET', '/jobs', response);
      const probe = await send('POST', '/health-alive');
      expect(probe.status).to.equal(405);
      expect(probe.headers.get('allow')).to.equal('GET, HEAD');
    });

    it('lists on every operation each status the service can answer there', () => {
      for (const operation of operations()) {
        const where = `${operation.method} ${operation.path}`;
        const expected = ['400', '405'];
        // Served without a key and without the database: no 401, no 503.
        if (!['/health-alive', '/health-check', '/metrics', '/console'].includes(operation.path))
          expected.push('401', '500', '503');
        if (operation.bodySchema) expected.push('413', '415');
        if (operation.path.includes('{')) expected.push('404');
        if (operation.method === 'POST' && ['/messages', '/messages/batch'].includes(operation.path))
          expected.push('429');
        expect(operation.statuses, where).to.include.members(expected);
      }
    });
  });
});
