import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import { parse } from 'yaml';
import { HandlerFactory } from '../../src/engine/handler-factory.ts';
import { createApp, openApiPath } from '../../src/http/app.ts';
import { JobService } from '../../src/jobs/job-service.ts';
import { IdempotencyStore } from '../../src/messages/idempotency.ts';
import { MessageService } from '../../src/messages/message-service.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { createMetrics } from '../../src/observability/metrics.ts';

/** Every route the app serves is in openapi.yaml, and every path there is served. */
describe('routes and openapi.yaml agree', () => {
  const unusedPool = {} as never; // the routes are only listed, never called
  const app = createApp({
    jobs: new JobService(unusedPool, new HandlerFactory({})),
    messages: new MessageService(unusedPool, { current: { messageMaxLength: 160 } }),
    idempotency: new IdempotencyStore(unusedPool),
    health: [],
    metrics: createMetrics(),
    logger: silentLogger(),
    apiKeys: () => [],
    intakePerMinute: () => 0,
  });

  const appRoutes = new Set<string>();
  const walk = (stack: any[]) => {
    for (const layer of stack) {
      if (layer.route) {
        for (const method of Object.keys(layer.route.methods)) {
          appRoutes.add(`${method.toUpperCase()} ${String(layer.route.path).replace(/:(\w+)/g, '{$1}')}`);
        }
      } else if (layer.handle?.stack) {
        walk(layer.handle.stack);
      }
    }
  };
  walk((app as any).router.stack);

  const spec = parse(readFileSync(openApiPath, 'utf8'));
  const specRoutes = new Set<string>();
  for (const [path, operations] of Object.entries<Record<string, unknown>>(spec.paths)) {
    for (const method of Object.keys(operations)) {
      if (['get', 'put', 'post', 'patch', 'delete'].includes(method)) specRoutes.add(`${method.toUpperCase()} ${path}`);
    }
  }

  it('serves nothing the spec does not describe (Swagger UI aside)', () => {
    expect(appRoutes).to.include('PUT /jobs/start').and.to.include('GET /messages/{id}');
    const undocumented = [...appRoutes].filter((route) => !specRoutes.has(route) && !route.includes('/swagger'));
    expect(undocumented).to.deep.equal([]);
  });

  it('describes nothing the app does not serve', () => {
    expect([...specRoutes].filter((route) => !appRoutes.has(route))).to.deep.equal([]);
  });
});
