import { withTimeout } from '../lib/with-timeout.ts';

/**
 * A named readiness check, owned by the component it checks. It resolves to a
 * short state ("ok", "dry-run", "disabled", …) or rejects when the dependency
 * is down. Critical checks turn `/health-check` into 503 "degraded"; the
 * others are only reported.
 */
export interface HealthCheck {
  name: string;
  critical: boolean;
  check(): Promise<string>;
}

/**
 * The checks `/health-check` runs: the built-in ones, each replaced by an
 * extra check of the same name, then the extra checks with new names.
 */
export function withReplacements(builtIn: HealthCheck[], extra: HealthCheck[] = []): HealthCheck[] {
  return [
    ...builtIn.map((check) => extra.find((replacement) => replacement.name === check.name) ?? check),
    ...extra.filter((check) => !builtIn.some((known) => known.name === check.name)),
  ];
}

/** One check's result: its state, or `down` (ok false) when it rejected or took longer than the bound. */
export interface HealthResult {
  name: string;
  critical: boolean;
  state: string;
  ok: boolean;
}

/** Runs every check at once, each bounded by `timeoutMs` (a timeout or a rejection reads `down`). Never rejects. */
export function runHealthChecks(checks: HealthCheck[], timeoutMs: number): Promise<HealthResult[]> {
  return Promise.all(
    checks.map(async ({ name, critical, check }) => {
      try {
        return { name, critical, state: await withTimeout(check(), timeoutMs), ok: true };
      } catch {
        return { name, critical, state: 'down', ok: false };
      }
    }),
  );
}

/** Each check by name: true when it answered within `timeoutMs`, false when it is down. Never rejects. */
export async function healthStates(checks: HealthCheck[], timeoutMs: number): Promise<Record<string, boolean>> {
  return Object.fromEntries((await runHealthChecks(checks, timeoutMs)).map((result) => [result.name, result.ok]));
}
