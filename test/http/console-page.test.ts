// The operator console's page and assets over HTTP (the browser tests are in
// test/clients/console.test.ts): served without a key even when API_KEYS is
// set, the page says whether the API needs one, HEAD works, other methods are
// 405 with Allow, the service's own CSP applies, and the page loads nothing
// from anywhere but this service.
import { expect } from 'chai';
import { rawRequest } from '../support/raw-http.ts';
import { useTestService } from '../support/service.ts';

const assets: Array<[string, RegExp]> = [
  ['/console/console.js', /^text\/javascript; charset=utf-8$/],
  ['/console/console.css', /^text\/css; charset=utf-8$/],
  ['/console/favicon.svg', /^image\/svg\+xml/],
];

function keyMode(html: string): string | undefined {
  return /<meta name="job-manager-api-key" content="([^"]*)">/.exec(html)?.[1];
}

describe('operator console page and assets', () => {
  describe('without API_KEYS', () => {
    const { service } = useTestService({ FETCH_INTERVAL_MS: '3600000' });

    for (const path of ['/console', '/console/']) {
      it(`GET ${path} is the page, saying no key is needed, under the service's CSP`, async () => {
        const response = await rawRequest(service().url, 'GET', path);
        expect(response.status).to.equal(200);
        expect(response.headers.get('content-type')).to.equal('text/html; charset=utf-8');
        expect(keyMode(response.text)).to.equal('none');
        const csp = response.headers.get('content-security-policy') ?? '';
        expect(csp).to.include("script-src 'self'");
        expect(csp).to.include("connect-src 'self'");
        expect(csp).to.include("script-src-attr 'none'");
        expect(response.headers.get('x-frame-options')).to.equal('DENY');
      });
    }

    it('loads only its own assets: no other origin, no inline script or style, a favicon', async () => {
      const { text } = await rawRequest(service().url, 'GET', '/console');
      expect(text).to.not.match(/https?:\/\//);
      expect(text).to.not.match(/<script(?![^>]*\bsrc=)[^>]*>/);
      expect(text).to.not.match(/<style|\sstyle=|\son[a-z]+=/i);
      const referenced = [...text.matchAll(/(?:src|href)="(\/[^"]*)"/g)].map((match) => match[1]);
      expect(referenced).to.have.members(assets.map(([path]) => path));
    });

    for (const [path, type] of assets) {
      it(`GET and HEAD ${path}: 200 ${type.source}; POST is 405 with Allow`, async () => {
        const get = await rawRequest(service().url, 'GET', path);
        expect(get.status).to.equal(200);
        expect(get.headers.get('content-type')).to.match(type);
        expect(get.text.length).to.be.greaterThan(100);
        const head = await rawRequest(service().url, 'HEAD', path);
        expect([head.status, head.text]).to.deep.equal([200, '']);
        expect(head.headers.get('content-length')).to.equal(get.headers.get('content-length'));
        const post = await rawRequest(service().url, 'POST', path);
        expect(post.status).to.equal(405);
        expect(post.headers.get('allow')).to.equal('GET, HEAD');
        expect(JSON.parse(post.text).error.code).to.equal('method_not_allowed');
      });
    }

    it('HEAD /console is 200 without a body; POST and DELETE /console are 405 with Allow: GET, HEAD', async () => {
      const head = await rawRequest(service().url, 'HEAD', '/console');
      expect([head.status, head.text, head.headers.get('content-type')]).to.deep.equal([
        200,
        '',
        'text/html; charset=utf-8',
      ]);
      for (const method of ['POST', 'DELETE']) {
        const response = await rawRequest(service().url, method, '/console');
        expect(response.status, method).to.equal(405);
        expect(response.headers.get('allow'), method).to.equal('GET, HEAD');
      }
    });

    it('any other path below /console is 404 not_found, labelled /console/* in the metrics', async () => {
      for (const path of [
        '/console/index.html',
        '/console/../package.json',
        '/console/console.js.map',
        '/console/x/y',
      ]) {
        const response = await rawRequest(service().url, 'GET', path);
        expect(response.status, path).to.equal(404);
        expect(JSON.parse(response.text).error.code, path).to.equal('not_found');
      }
      const metrics = (await rawRequest(service().url, 'GET', '/metrics')).text;
      expect(metrics).to.include('route="/console/*",status_code="404"');
      expect(metrics).to.not.match(/route="\/console\/x/);
    });
  });

  describe('with API_KEYS', () => {
    const { service } = useTestService({ FETCH_INTERVAL_MS: '3600000', API_KEYS: 'console-key-1' });

    it('serves the page and its assets without a key, and the page says a key is required', async () => {
      const page = await rawRequest(service().url, 'GET', '/console');
      expect(page.status).to.equal(200);
      expect(keyMode(page.text)).to.equal('required');
      for (const [path] of assets) expect((await rawRequest(service().url, 'GET', path)).status, path).to.equal(200);
      // The API it calls still needs the key.
      expect((await rawRequest(service().url, 'GET', '/messages')).status).to.equal(401);
    });
  });
});
