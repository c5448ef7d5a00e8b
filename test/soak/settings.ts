/**
 * The soak's knobs, from the environment: `SOAK_SECONDS` (180: how long the
 * nemesis and the workload run), `SEED` (20261207: the fault schedule and the
 * workload mix), `PODS` (3), `SOAK_RATE` (60: messages per second offered).
 * A bad value stops the run with a message naming the variable.
 */
export interface SoakSettings {
  seconds: number;
  seed: number;
  pods: number;
  rate: number;
}

export const defaultSeed = 20261207;

export function soakSettings(env: NodeJS.ProcessEnv = process.env): SoakSettings {
  return {
    seconds: integer(env, 'SOAK_SECONDS', 180, 30, 86_400),
    seed: integer(env, 'SEED', defaultSeed, 0, 4_294_967_295),
    pods: integer(env, 'PODS', 3, 2, 6),
    rate: integer(env, 'SOAK_RATE', 60, 1, 1_000),
  };
}

/** The command that replays a run (same schedule and workload mix). */
export function replayCommand(settings: SoakSettings): string {
  return `SEED=${settings.seed} SOAK_SECONDS=${settings.seconds} PODS=${settings.pods} SOAK_RATE=${settings.rate} npm run test:soak`;
}

/** What the pods run with: short leases and timeouts so faults resolve within the run. */
export const podSettings = {
  FETCH_INTERVAL_MS: '1000',
  WORKER_COUNT: '4',
  WEBHOOK_TIMEOUT_MS: '3000',
  MESSAGE_LEASE_SECONDS: '15',
  JOB_LEASE_SECONDS: '15',
  WEBHOOK_MAX_ATTEMPTS: '20',
  WEBHOOK_RETRY_BASE_MS: '200',
  WEBHOOK_RETRY_MAX_MS: '5000',
  SHUTDOWN_TIMEOUT_MS: '5000',
  DATABASE_START_TIMEOUT_MS: '30000',
} as const;

function integer(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max)
    throw new Error(`${name} must be an integer from ${min} to ${max}, got "${raw}"`);
  return value;
}
