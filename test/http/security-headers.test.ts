// Issue 10, point 9: helmet's headers on every answer, with a
// Content-Security-Policy the Swagger UI page can live with.
import { expect } from 'chai';
import { rawRequest } from '../support/raw-http.ts';
import { useTestService } from '../support/service.ts';

describe('security headers (issue 10, point 9)', () => {
  const { service } = useTestService({ FETCH_INTERVAL_MS: '3600000' });

  const directives = (csp: string) =>
    Object.fromEntries(
      csp.split(';').map((directive) => {
        const [name, ...values] = directive.trim().split(/\s+/);
        return [name!, values];
      }),
    );

  it('sends helmet headers on API answers, errors, probes and Swagger UI', async () => {
    for (const [method, path] of [
      ['GET', '/jobs'],
      ['GET', '/nowhere'],
      ['POST', '/messages'],
      ['GET', '/health-alive'],
      ['GET', '/swagger/index.html'],
    ] as const) {
      const { headers } = await rawRequest(service().url, method, path);
      const where = `${method} ${path}`;
      expect(headers.get('x-content-type-options'), where).to.equal('nosniff');
      // The API is never framed; the Swagger page's own helmet (src/http/swagger.ts) allows its origin.
      expect(headers.get('x-frame-options'), where).to.equal(path.startsWith('/swagger') ? 'SAMEORIGIN' : 'DENY');
      expect(headers.get('strict-transport-security'), where).to.match(/max-age=\d+/);
      expect(headers.get('referrer-policy'), where).to.equal('no-referrer');
      expect(headers.get('cross-origin-opener-policy'), where).to.equal('same-origin');
      expect(headers.get('content-security-policy'), where).to.be.a('string');
      expect(headers.has('x-powered-by'), where).to.equal(false);
    }
  });

  it('gives API answers a policy that allows nothing but this origin and no framing', async () => {
    const { headers } = await rawRequest(service().url, 'GET', '/jobs');
    const csp = directives(headers.get('content-security-policy')!);
    expect(csp['default-src']).to.deep.equal(["'self'"]);
    expect(csp['script-src']).to.deep.equal(["'self'"]);
    expect(csp['object-src']).to.deep.equal(["'none'"]);
    expect(csp['frame-ancestors']).to.deep.equal(["'none'"]);
    expect(csp).to.not.have.property('upgrade-insecure-requests');
  });

  it('allows only this origin for scripts, so every script of the Swagger UI page must be a file it serves', async () => {
    const page = await rawRequest(service().url, 'GET', '/swagger/index.html');
    const csp = directives(page.headers.get('content-security-policy')!);
    expect(csp['script-src']).to.deep.equal(["'self'"]);
    expect(csp['default-src']).to.deep.equal(["'self'"]);
    expect(csp['img-src']).to.include.members(["'self'", 'data:']);
    expect(csp).to.not.have.property('upgrade-insecure-requests');
    const scripts = [...page.text.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/gi)];
    expect(scripts.length).to.be.greaterThan(0);
    for (const [, attributes, body] of scripts) {
      const src = /\bsrc=["']([^"']+)["']/.exec(attributes!)?.[1];
      expect(src, `inline script would be blocked: ${body!.slice(0, 80)}`).to.be.a('string');
      expect(src, 'scripts come from this origin').to.not.match(/^(https?:)?\/\//);
      const script = await rawRequest(
        service().url,
        'GET',
        new URL(src!, `${service().url}/swagger/index.html`).pathname,
      );
      expect(script.status, src).to.equal(200);
    }
  });
});
