import type { Logger } from '../observability/logger.ts';

/** What a handler is told about the run it executes. */
export interface RunContext {
  jobName: string;
  runId: string;
  /** The slot this run serves (ISO time). */
  dueAt: string;
  batchSize: number;
  /** Aborted when the run lost its lease (the job was stopped or taken over) or the pod shuts down. */
  signal: AbortSignal;
  logger: Logger;
}

/** A summary the handler may return; it is logged with the run. */
export type RunSummary = Record<string, number | string | boolean>;

export interface JobHandler {
  run(context: RunContext): Promise<RunSummary | undefined>;
}
