// Requests Node's HTTP parser refuses before express sees them get the API's
// error body, the right status and Connection: close (tester's report, point 2),
// and the absolute-form request line is served. Raw bytes on a raw socket: no
// client library sends these.
import { expect } from 'chai';
import { type RawResponse, rawExchange, rawText } from '../support/raw-http.ts';
import { useTestService } from '../support/service.ts';

describe('malformed HTTP requests get the error body (protocol level)', () => {
  const { db, service } = useTestService({ FETCH_INTERVAL_MS: '3600000' });

  function expectError(response: RawResponse, status: number, code: string, message: string) {
    expect(response.status).to.equal(status);
    expect(response.headers.get('content-type')).to.equal('application/json; charset=utf-8');
    expect(response.headers.get('connection')).to.equal('close');
    expect(JSON.parse(response.text)).to.deep.equal({ error: { code, message } });
  }

  const cases: Array<[string, Buffer | string, number, string, string]> = [
    [
      'Content-Length: abc',
      'GET /jobs HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\nConnection: close\r\n\r\n',
      400,
      'invalid_content_length',
      'the Content-Length header is not a single decimal number',
    ],
    [
      'a control byte (0x01) in a header value',
      'GET /jobs HTTP/1.1\r\nHost: x\r\nX-Note: a\x01b\r\n\r\n',
      400,
      'invalid_header',
      'a header name or value has a character HTTP does not allow',
    ],
    [
      'a raw 0xff byte in the path',
      Buffer.concat([Buffer.from('GET /jobs/'), Buffer.from([0xff]), Buffer.from(' HTTP/1.1\r\nHost: x\r\n\r\n')]),
      400,
      'invalid_url',
      'the request target has a character HTTP does not allow (encode it as %XX)',
    ],
    [
      'method FOO',
      'FOO /jobs HTTP/1.1\r\nHost: x\r\n\r\n',
      501,
      'method_not_implemented',
      'method FOO is not implemented',
    ],
    [
      'bytes that are no request line at all (a TLS hello to the HTTP port)',
      Buffer.from('16030100a5010000a103035f', 'hex'),
      400,
      'malformed_request',
      'the request line is not valid HTTP/1.1',
    ],
    [
      'Transfer-Encoding: chunked, then a Content-Length',
      'POST /messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n',
      400,
      'invalid_content_length',
      'send Content-Length or Transfer-Encoding: chunked, not both',
    ],
    [
      'Content-Length together with Transfer-Encoding: chunked',
      'POST /messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
      400,
      'invalid_chunked_encoding',
      'the body is not valid chunked encoding',
    ],
    [
      'an HTTP/1.1 request without Host (RFC 9112 §3.2: 400)',
      'GET /jobs HTTP/1.1\r\nConnection: close\r\n\r\n',
      400,
      'missing_host',
      'an HTTP/1.1 request needs a Host header',
    ],
    [
      'CONNECT (this is no proxy)',
      'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n',
      501,
      'method_not_implemented',
      'method CONNECT is not implemented',
    ],
    [
      'a 20 KB header',
      `GET /jobs HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
      431,
      'request_header_fields_too_large',
      'the request headers are larger than 16 KB',
    ],
  ];
  for (const [what, bytes, status, code, message] of cases) {
    it(`answers ${status} ${code} with the error body to ${what}`, async () => {
      expectError(await rawExchange(service().url, bytes), status, code, message);
    });
  }

  it('answers 400 invalid_chunked_encoding to a bad chunk size after the headers were read, storing nothing', async () => {
    const count = async () => Number((await db().pool.query('SELECT count(*) AS n FROM messages')).rows[0].n);
    const before = await count();
    const response = await rawExchange(
      service().url,
      'POST /messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{"to":"+905551111111","content":"x"}\r\n0\r\n\r\n',
    );
    expectError(response, 400, 'invalid_chunked_encoding', 'the body is not valid chunked encoding');
    // The answer went out on express's response, so it has the security headers too.
    expect(response.headers.get('x-content-type-options')).to.equal('nosniff');
    expect(await count()).to.equal(before);
  });

  for (const [first, status] of [
    [
      'POST /messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{"to":"+905551111111","content":"piped"}',
      201,
    ],
    ['GET /jobs HTTP/1.1\r\nHost: x\r\n\r\n', 200],
  ] as const) {
    const request = first.slice(0, first.indexOf(' /'));
    it(`answers a whole ${request} followed by junk on one connection with its own ${status}, then 400 for the junk`, async () => {
      const count = async () =>
        Number((await db().pool.query("SELECT count(*) AS n FROM messages WHERE content = 'piped'")).rows[0].n);
      const before = await count();
      const raw = await rawText(service().url, `${first}xyz garbage\r\n\r\n`);
      const statuses = [...raw.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((match) => Number(match[1]));
      expect(statuses).to.deep.equal([status, 400]);
      expect(raw).to.include(
        '{"error":{"code":"malformed_request","message":"the request line is not valid HTTP/1.1"}}',
      );
      expect(await count()).to.equal(before + (request === 'POST' ? 1 : 0));
    });
  }

  it('keeps serving after a malformed request', async () => {
    await rawExchange(service().url, 'GET /jobs HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n');
    expect((await fetch(`${service().url}/health-alive`)).status).to.equal(200);
  });

  it('serves a request with an Expect other than 100-continue as usual, never a bare 417', async () => {
    // RFC 9110 §10.1.1: a server MAY answer 417; Node's default one has no error body and is
    // documented on no operation, so the request is served like any other.
    const listed = await rawExchange(
      service().url,
      'GET /jobs HTTP/1.1\r\nHost: x\r\nExpect: something-else\r\nConnection: close\r\n\r\n',
    );
    expect(listed.status).to.equal(200);
    expect(JSON.parse(listed.text).jobs.map((job: { name: string }) => job.name)).to.include('message-sender');
    const body = '{"to":"+905551111111","content":"expect"}';
    const created = await rawExchange(
      service().url,
      `POST /messages HTTP/1.1\r\nHost: x\r\nExpect: foo\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
    );
    expect(created.status).to.equal(201);
    expect(JSON.parse(created.text)).to.include({ content: 'expect', status: 'pending' });
  });

  describe('absolute-form request line (RFC 9112 §3.2.2)', () => {
    it('serves GET http://x/jobs as GET /jobs', async () => {
      const response = await rawExchange(
        service().url,
        'GET http://x/jobs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
      );
      expect(response.status).to.equal(200);
      const names = (JSON.parse(response.text).jobs as Array<{ name: string }>).map((job) => job.name);
      expect(names).to.include('message-sender');
    });

    it('keeps the query and serves a bare authority as /', async () => {
      const limited = await rawExchange(
        service().url,
        'GET http://x:8080/messages?limit=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
      );
      expect(limited.status).to.equal(400);
      expect(JSON.parse(limited.text).error.code).to.equal('validation_failed');
      const root = await rawExchange(service().url, 'GET http://x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      expect(root.status).to.equal(404);
      expect(JSON.parse(root.text)).to.deep.equal({ error: { code: 'not_found', message: 'no route for GET /' } });
    });
  });
});
