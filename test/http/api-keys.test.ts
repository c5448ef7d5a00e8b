// Issue 10, point 2: API keys as Bearer tokens or X-API-Key, declared in
// openapi.yaml so Swagger's Authorize sends them, and a 401 that says how.
import { expect } from 'chai';
import { ConfigError } from '../../src/config/config.ts';
import { operations, responseProblems, spec } from '../support/openapi-contract.ts';
import { rawRequest } from '../support/raw-http.ts';
import { useTestService } from '../support/service.ts';

describe('API keys (issue 10, point 2)', () => {
  const { service } = useTestService({ API_KEYS: 'first-key, second-key', FETCH_INTERVAL_MS: '3600000' });
  const get = (path: string, headers: Record<string, string> = {}) =>
    rawRequest(service().url, 'GET', path, { headers });

  it('accepts a key as Authorization: Bearer or as X-API-Key, any of the configured keys', async () => {
    const variants: Array<Record<string, string>> = [
      { authorization: 'Bearer first-key' },
      { authorization: 'bearer second-key' },
      { 'x-api-key': 'first-key' },
      { 'x-api-key': 'second-key' },
      { 'x-api-key': 'wrong', authorization: 'Bearer second-key' },
    ];
    for (const headers of variants) {
      expect((await get('/jobs', headers)).status, JSON.stringify(headers)).to.equal(200);
    }
  });

  it('answers 401 with WWW-Authenticate: Bearer and the error body, documented on the operation', async () => {
    const listJobs = operations().find((operation) => operation.operationId === 'listJobs')!;
    const missing = await get('/jobs');
    expect(missing.status).to.equal(401);
    expect(missing.headers.get('www-authenticate')).to.equal('Bearer realm="job-manager"');
    expect(JSON.parse(missing.text)).to.deep.equal({
      error: {
        code: 'unauthorized',
        message: 'an API key is required: send "Authorization: Bearer <key>" or "X-API-Key: <key>"',
      },
    });
    expect(responseProblems(listJobs, missing)).to.deep.equal([]);
    const wrongKeys: Array<Record<string, string>> = [
      { authorization: 'Bearer first-key-but-longer' },
      { authorization: 'Bearer first-ke' },
      { authorization: 'Basic Zmlyc3Qta2V5Og==' },
      { authorization: 'first-key' },
      { 'x-api-key': 'FIRST-KEY' },
    ];
    for (const headers of wrongKeys) {
      const wrong = await get('/jobs', headers);
      expect(wrong.status, JSON.stringify(headers)).to.equal(401);
      expect(wrong.headers.get('www-authenticate'), JSON.stringify(headers)).to.match(/^Bearer realm="job-manager"/);
    }
    const invalid = await get('/jobs', { 'x-api-key': 'nope' });
    expect(invalid.headers.get('www-authenticate')).to.equal('Bearer realm="job-manager", error="invalid_token"');
    expect(JSON.parse(invalid.text).error.message).to.equal('the API key is not valid');
  });

  it('protects every operation that declares security, and only health, metrics and Swagger UI are open', async () => {
    for (const operation of operations()) {
      const path = operation.path
        .replace('{name}', 'message-sender')
        .replace('{id}', '0f8fad5b-d9cb-469f-a165-70867728950e');
      const response = await rawRequest(service().url, operation.method, path, {
        headers: { 'content-type': 'application/json' },
        body: operation.bodySchema ? '{}' : undefined,
      });
      const where = `${operation.method} ${operation.path}`;
      const security = (operation.spec.security ?? spec.security) as unknown[];
      if (security.length > 0) {
        expect(response.status, where).to.equal(401);
        expect(operation.spec.security, where).to.deep.equal([{ bearerAuth: [] }, { apiKeyHeader: [] }]);
      } else {
        expect(response.status, where).to.be.oneOf([200, 503]);
      }
    }
    expect((await get('/swagger/index.html')).status).to.equal(200);
    // Unknown paths need a key too: nothing about the API is told to a stranger.
    expect((await get('/no-such-path')).status).to.equal(401);
  });

  it('refuses a live change that would empty API_KEYS while listening on 0.0.0.0', async () => {
    // The service's own live configuration, changed the way a new Vault secret changes it.
    const { live } = service();
    let refusal: unknown;
    await live.update({ API_KEYS: '' }).catch((error) => {
      refusal = error;
    });
    expect(refusal).to.be.instanceOf(ConfigError);
    expect((refusal as ConfigError).message).to.include(
      'API_KEYS cannot be emptied while the service listens on 0.0.0.0',
    );
    expect(live.current.apiKeys, 'the running configuration is kept').to.deep.equal(['first-key', 'second-key']);
    expect((await get('/jobs')).status, 'keys still apply').to.equal(401);
  });
});
