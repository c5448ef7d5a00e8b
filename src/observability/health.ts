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
