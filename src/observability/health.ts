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
