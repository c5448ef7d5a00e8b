/**
 * What one delivery run reads of the live configuration, once at its start:
 * a change applies from the next run on.
 */
import type { Config } from '../config/config.ts';
import type { BackoffOptions } from './backoff.ts';

export interface RunSettings {
  /** Lease owner prefix (INSTANCE_ID); the run's execution id is appended so two runs of one pod never share a lease. */
  instanceId: string;
  /** How long a claimed message stays ours (s). */
  messageLeaseSeconds: number;
  /** WEBHOOK_CONCURRENCY; the pod's gate (policies/lanes.ts) holds the limit in force. */
  concurrency: number;
  /** A transient failure on this attempt or later is final. */
  maxAttempts: number;
  /** The webhook's whole-request timeout (ms); with the lease it bounds the chunk size. */
  timeoutMs: number;
  /** Retry backoff ceilings (ms). */
  backoff: Pick<BackoffOptions, 'baseMs' | 'maxMs'>;
}

/** The run settings in `config` (INSTANCE_ID, MESSAGE_LEASE_SECONDS and the WEBHOOK_* delivery knobs). */
export function runSettings(config: Config): RunSettings {
  return {
    instanceId: config.instanceId,
    messageLeaseSeconds: config.messageLeaseSeconds,
    concurrency: config.webhook.concurrency,
    maxAttempts: config.webhook.maxAttempts,
    timeoutMs: config.webhook.timeoutMs,
    backoff: { baseMs: config.webhook.retryBaseMs, maxMs: config.webhook.retryMaxMs },
  };
}
