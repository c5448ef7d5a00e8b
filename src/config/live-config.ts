import { type Config, ConfigError, pickSettings, type RawSettings, validateRaw } from './config.ts';
import { allSettings } from './settings.ts';

/** What a proposed change would do. */
export interface ConfigChange {
  /** The configuration that would run: live settings from the proposal, restart-only ones as they run now. */
  config: Config;
  /** Live settings whose effective value changes. */
  applied: string[];
  /** Restart-only settings whose effective value changed; they wait for the next start. */
  needsRestart: string[];
}

export type ConfigListener = (config: Config) => Promise<void> | void;

/** Refuses a configuration the running process cannot take (throws ConfigError); called before anything applies. */
export type ConfigGuard = (next: Config, running: Config) => void;

/**
 * What a component holds of the live configuration: the running one, and a
 * subscription to each accepted change. A component that uses a live setting
 * subscribes once (`onChange`, given the validated whole configuration that now
 * runs) and registers the rules it owns (`addGuard`, asked before anything
 * applies); the composition root fans nothing out. `LiveConfig` implements it.
 */
export interface LiveSettings {
  readonly current: Config;
  onChange(listener: ConfigListener): void;
  addGuard(guard: ConfigGuard): void;
}

const restartOnly = allSettings.filter((s) => s.apply === 'restart').map((s) => s.env);

/**
 * The one live-configuration object. It holds the running configuration and
 * the raw values it was made of. A new Vault secret is merged (defaults <
 * environment < Vault), restart-only settings are pinned at their running
 * values, and the result is validated as the whole configuration that will
 * actually run, cross-setting rules included (so a live WEBHOOK timeout is
 * checked against the message lease that runs, not the one Vault proposes).
 * Accepted changes reach every listener through `update`, the one path.
 */
export class LiveConfig implements LiveSettings {
  readonly #env: RawSettings;
  readonly #source: string;
  readonly #listeners: ConfigListener[] = [];
  readonly #guards: ConfigGuard[] = [];
  #running: Record<string, string>;
  #current: Config;

  /**
   * @param source where the top layer comes from, for error messages (e.g. the Vault secret path)
   * @throws ConfigError when the starting layers are invalid
   */
  constructor(env: RawSettings, vault: RawSettings = {}, source = 'Vault') {
    this.#env = env;
    this.#source = source;
    this.#running = this.#merge(vault);
    this.#current = this.#validate(this.#running, vault);
  }

  get current(): Config {
    return this.#current;
  }

  onChange(listener: ConfigListener): void {
    this.#listeners.push(listener);
  }

  /** Adds a check that can refuse a change the running process cannot take (e.g. what it listens on). */
  addGuard(guard: ConfigGuard): void {
    this.#guards.push(guard);
  }

  /** Validates a new top layer without applying it (the guards included). @throws ConfigError naming the key */
  propose(vault: RawSettings): ConfigChange {
    const proposed = this.#merge(vault);
    const config = this.#validate(this.#pinned(vault), vault);
    for (const guard of this.#guards) guard(config, this.#current);
    const differs = (name: string) => proposed[name] !== this.#running[name];
    return {
      config,
      applied: Object.keys({ ...proposed, ...this.#running }).filter((n) => differs(n) && !restartOnly.includes(n)),
      needsRestart: restartOnly.filter(differs),
    };
  }

  /**
   * Validates, then applies through every listener in order. A refused change
   * keeps the running configuration. @throws ConfigError
   */
  async update(vault: RawSettings): Promise<ConfigChange> {
    const change = this.propose(vault);
    this.#running = this.#pinned(vault);
    this.#current = change.config;
    for (const listener of this.#listeners) await listener(change.config);
    return change;
  }

  #merge(vault: RawSettings): Record<string, string> {
    return { ...pickSettings(this.#env), ...pickSettings(vault) };
  }

  /** The merged layers with every restart-only setting at its running value. */
  #pinned(vault: RawSettings): Record<string, string> {
    const raw = this.#merge(vault);
    for (const name of restartOnly) {
      const running = this.#running[name];
      if (running === undefined) delete raw[name];
      else raw[name] = running;
    }
    return raw;
  }

  #validate(raw: Record<string, string>, vault: RawSettings): Config {
    try {
      return validateRaw(raw);
    } catch (error) {
      if (error instanceof ConfigError && vault[error.key] !== undefined) {
        error.message += ` (set in ${this.#source})`;
      }
      throw error;
    }
  }
}
