// Issue 10, point 7: the `route` label of http_request_duration_seconds is
// the OpenAPI path template, /swagger/* or unmatched, whatever a client sends.
import { expect } from 'chai';
import fc from 'fast-check';
import { rawRequest } from '../support/raw-http.ts';
import { useTestService } from '../support/service.ts';

describe('bounded metric labels (issue 10, point 7)', () => {
  const { service } = useTestService({ FETCH_INTERVAL_MS: '3600000' });

  async function routeLabels(): Promise<Set<string>> {
    const text = (await rawRequest(service().url, 'GET', '/metrics')).text;
    return new Set(
      [...text.matchAll(/^http_request_duration_seconds_count\{[^}]*route="([^"]*)"/gm)].map((match) => match[1]!),
    );
  }

  it('keeps at most 25 route values after 60 random paths, none of them raw', async () => {
    const paths = fc.sample(
      fc.oneof(
        fc.webPath(),
        fc.webSegment().map((segment) => `/swagger/${segment}`),
        fc.webSegment().map((segment) => `/jobs/${segment}`),
        fc.webSegment().map((segment) => `/messages/${segment}/${segment}`),
        fc.constantFrom('/jobs/%ff', '/metrics/x', '/health-alive/', '/swagger', '/JOBS'),
      ),
      { numRuns: 60, seed: 10 },
    );
    const methods = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS'];
    for (const [index, path] of paths.entries()) {
      const response = await rawRequest(
        service().url,
        methods[index % methods.length]!,
        path.startsWith('/') ? path : `/${path}`,
      );
      expect(response.status, path).to.be.below(500);
    }
    const labels = await routeLabels();
    expect(labels.size).to.be.at.most(25);
    const allowed = /^(\/[a-z-]+(\/(\{[a-z]+\}|[a-z-]+))*|\/swagger\/\*|unmatched)$/;
    for (const label of labels) expect(label).to.match(allowed);
    expect(labels).to.include('unmatched');
    expect(labels).to.include('/swagger/*');
    expect(labels).to.include('/jobs/{name}');
  });
});
