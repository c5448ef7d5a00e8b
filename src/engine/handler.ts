import type { Logger } from '../observability/logger.ts';
import type { TraceContext } from '../observability/tracing.ts';

/** What a handler is told about the run it executes. */
export interface RunContext {
  jobName: string;
  runId: string;
  /** This execution of the run; claims made under it stop once it is superseded. */
  executionId: string;
  /** The slot this run serves (ISO time). */
  dueAt: string;
  batchSize: number;
  /** Aborted when the run lost its lease (the job was stopped or taken over) or the pod begins shutting down: claim nothing more. */
  signal: AbortSignal;
  /** Aborted at the shutdown deadline: abort requests in flight and hand their work back. */
  deadline: AbortSignal;
  logger: Logger;
  /** The run's span: what the handler's own spans (a claim) continue. */
  trace: TraceContext;
}

/** A summary the handler may return; it is logged with the run. */
export type RunSummary = Record<string, number | string | boolean>;

export interface JobHandler {
  run(context: RunContext): Promise<RunSummary | undefined>;
}
