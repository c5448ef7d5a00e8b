import { expect } from 'chai';
import { ConfigError, resolveConfig, tracingOptions } from '../../src/config/config.ts';

/** The message start-up stops with for `env`, or undefined when it is valid. */
function refusal(env: Record<string, string>): string | undefined {
  try {
    resolveConfig(env);
    return undefined;
  } catch (error) {
    expect(error).to.be.instanceOf(ConfigError);
    return (error as Error).message;
  }
}

describe('OpenTelemetry settings (OTEL_*)', () => {
  it('exports nothing by default: no endpoint, http/protobuf, job-manager, parent-based always on', () => {
    expect(tracingOptions(resolveConfig({}))).to.deep.equal({
      tracesUrl: undefined,
      protocol: 'http/protobuf',
      headers: {},
      serviceName: 'job-manager',
      resourceAttributes: {},
      sampler: 'parentbased_always_on',
      samplerRatio: 1,
      batchDelayMs: 5_000,
    });
  });

  it('sends traces to <OTEL_EXPORTER_OTLP_ENDPOINT>/v1/traces, or to the traces endpoint as given, which wins', () => {
    const url = (env: Record<string, string>) => tracingOptions(resolveConfig(env)).tracesUrl;
    expect(url({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' })).to.equal('http://collector:4318/v1/traces');
    expect(url({ OTEL_EXPORTER_OTLP_ENDPOINT: 'https://collector/otlp/' })).to.equal(
      'https://collector/otlp/v1/traces',
    );
    expect(url({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://jaeger:4318/custom' })).to.equal(
      'http://jaeger:4318/custom',
    );
    expect(
      url({
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://jaeger:4318/v1/traces',
      }),
    ).to.equal('http://jaeger:4318/v1/traces');
  });

  it('takes the traces protocol over the general one, and reads the other standard variables', () => {
    const options = tracingOptions(
      resolveConfig({
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json',
        OTEL_EXPORTER_OTLP_HEADERS: 'api-key=s3cr%3Dt, x-tenant = blue ',
        OTEL_SERVICE_NAME: 'sms-dispatch',
        OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=prod,service.namespace=messaging',
        OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
        OTEL_TRACES_SAMPLER_ARG: '0.25',
        OTEL_BSP_SCHEDULE_DELAY: '1000',
      }),
    );
    expect(options).to.deep.include({
      protocol: 'http/json',
      headers: { 'api-key': 's3cr=t', 'x-tenant': 'blue' },
      serviceName: 'sms-dispatch',
      resourceAttributes: { 'deployment.environment.name': 'prod', 'service.namespace': 'messaging' },
      sampler: 'parentbased_traceidratio',
      samplerRatio: 0.25,
      batchDelayMs: 1_000,
    });
  });

  const invalid: Array<[Record<string, string>, string]> = [
    [
      { OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' },
      'Invalid configuration: OTEL_EXPORTER_OTLP_PROTOCOL Invalid option: expected one of "http/protobuf"|"http/json" (got "grpc")',
    ],
    [
      { OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/xml' },
      'Invalid configuration: OTEL_EXPORTER_OTLP_TRACES_PROTOCOL Invalid option: expected one of "http/protobuf"|"http/json" (got "http/xml")',
    ],
    [
      { OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' },
      'Invalid configuration: OTEL_EXPORTER_OTLP_ENDPOINT must use http or https (got "collector:4318")',
    ],
    [
      { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'not a url' },
      'Invalid configuration: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT must be a URL (got "not a url")',
    ],
    [
      { OTEL_TRACES_SAMPLER: 'sometimes' },
      'Invalid configuration: OTEL_TRACES_SAMPLER Invalid option: expected one of "parentbased_always_on"|"parentbased_always_off"|"parentbased_traceidratio"|"always_on"|"always_off"|"traceidratio" (got "sometimes")',
    ],
    [
      { OTEL_TRACES_SAMPLER_ARG: '1.5' },
      'Invalid configuration: OTEL_TRACES_SAMPLER_ARG Too big: expected number to be <=1 (got "1.5")',
    ],
    [
      { OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=prod,broken' },
      'Invalid configuration: OTEL_RESOURCE_ATTRIBUTES entry 2 must be key=value (value percent-encoded) (got "deployment.environment.name=prod,broken")',
    ],
    [
      { OTEL_RESOURCE_ATTRIBUTES: 'team=%E0%A4%A' },
      'Invalid configuration: OTEL_RESOURCE_ATTRIBUTES entry 1 must be key=value (value percent-encoded) (got "team=%E0%A4%A")',
    ],
    [
      { OTEL_BSP_SCHEDULE_DELAY: '0' },
      'Invalid configuration: OTEL_BSP_SCHEDULE_DELAY Too small: expected number to be >=1 (got "0")',
    ],
  ];
  for (const [env, message] of invalid) {
    it(`stops start-up naming the key: ${JSON.stringify(env)}`, () => {
      expect(refusal(env)).to.equal(message);
    });
  }

  it('never shows the collector headers, a secret, in the refusal', () => {
    expect(refusal({ OTEL_EXPORTER_OTLP_HEADERS: 'authorization' })).to.equal(
      'Invalid configuration: OTEL_EXPORTER_OTLP_HEADERS entry 1 must be key=value (value percent-encoded)',
    );
  });
});
