// The route table (operationId -> handler) and openapi.yaml must name the same
// operations: the table's type holds it at compile time against the generated
// types, and createApp holds it at start against the spec actually read.
import { expect } from 'chai';
import { LiveConfig } from '../../src/config/live-config.ts';
import { createApp } from '../../src/http/app.ts';
import { loadApiSpec, type OpenApiDocument } from '../../src/http/spec-routes.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { createMetrics } from '../../src/observability/metrics.ts';

describe('the route table against openapi.yaml', () => {
  const settings = new LiveConfig({});
  // The handlers are only listed at start, never called here.
  const unused = {} as never;
  const deps = {
    jobs: unused,
    messages: unused,
    idempotency: unused,
    health: [],
    metrics: createMetrics(),
    logger: silentLogger(),
  };
  const startWith = (spec: OpenApiDocument) => () => createApp(settings, spec, deps);

  it('starts with the committed openapi.yaml', () => {
    expect(startWith(loadApiSpec())).not.to.throw();
  });

  it('refuses to start when the spec has an operation no handler serves, naming it', () => {
    const spec = loadApiSpec();
    const path = spec.paths!['/jobs']!;
    path.delete = { operationId: 'deleteJob', responses: { 204: { description: 'gone' } } };
    expect(startWith(spec)).to.throw(/no handler for \[deleteJob\], not in openapi.yaml: \[\]/);
  });

  it('refuses to start when a handler has no operation in the spec, naming it', () => {
    const spec = loadApiSpec();
    delete spec.paths!['/messages/retry-failed'];
    expect(startWith(spec)).to.throw(/no handler for \[\], not in openapi.yaml: \[retryFailedMessages\]/);
  });
});
