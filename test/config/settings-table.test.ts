import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import { ConfigError } from '../../src/config/config.ts';
import { LiveConfig } from '../../src/config/live-config.ts';
import { allSettings, liveSettings, logRedactionPaths, secretSettings } from '../../src/config/settings.ts';
import { settingsDocsPath, withSettingsTable } from '../../src/config/settings-docs.ts';
import { createLogger } from '../../src/observability/logger.ts';

const page = readFileSync(new URL(`../../${settingsDocsPath}`, import.meta.url), 'utf8');

describe('the settings table', () => {
  it('is what the configuration page (docs/configuration.md) shows, name by name and default by default', () => {
    const rows = [...page.matchAll(/^\| `([A-Z][A-Z0-9_]*)` \| (`[^`]*`|unset) \| ([a-z, ]+) \|/gm)];
    const fromPage = rows.map(([, name, shown, flags]) => ({ name, shown, flags }));
    const fromTable = allSettings.map((s) => ({
      name: s.env,
      shown: s.shownDefault === undefined ? 'unset' : `\`${s.shownDefault}\``,
      flags: [s.apply, ...(s.secret ? ['secret'] : [])].join(', '),
    }));
    expect(fromPage).to.deep.equal(fromTable);
    expect(withSettingsTable(page), 'run npm run docs:config').to.equal(page);
  });

  it('declares secrets once: they are redacted from log lines, raw or typed', () => {
    expect(secretSettings).to.include.members(['DATABASE_URL', 'WEBHOOK_AUTH_VALUE', 'API_KEYS', 'VAULT_TOKEN']);
    expect(secretSettings, 'a rate is not a secret').not.to.include('RATE_LIMIT_PER_MINUTE');
    const lines: string[] = [];
    const logger = createLogger({
      level: 'info',
      instanceId: 't',
      redact: logRedactionPaths(),
      destination: { write: (line: string) => void lines.push(line) },
    });
    logger.info({ config: { webhook: { authValue: 'hunter2' }, apiKeys: ['k-123'] }, API_KEYS: 'k-456' }, 'x');
    expect(lines.join('')).not.to.match(/hunter2|k-123|k-456/);
  });

  it('splits live from restart-only settings', () => {
    expect(liveSettings).to.include.members(['WORKER_COUNT', 'WEBHOOK_TIMEOUT_MS', 'LOG_LEVEL']);
    expect(liveSettings).not.to.include.members(['PORT', 'MESSAGE_LEASE_SECONDS', 'DATABASE_URL']);
  });
});

describe('live configuration', () => {
  const env = { DATABASE_URL: 'postgres://db/x', WEBHOOK_TIMEOUT_MS: '5000' };

  it('refuses a live webhook timeout that would outlive the lease that runs (restart-only values pinned)', () => {
    const live = new LiveConfig(env, { MESSAGE_LEASE_SECONDS: '60' });
    // Vault proposes a longer lease together with a longer timeout: the lease only applies at restart,
    // so the configuration that would run is lease 60 s with timeout 40 s: refused.
    expect(() => live.propose({ MESSAGE_LEASE_SECONDS: '120', WEBHOOK_TIMEOUT_MS: '40000' }))
      .to.throw(ConfigError)
      .with.property('message')
      .that.matches(/MESSAGE_LEASE_SECONDS must be at least twice WEBHOOK_TIMEOUT_MS \(60 s < 2 × 40000 ms\)/);
    expect(live.current.webhook.timeoutMs).to.equal(5000);
  });

  it('applies live values through its listeners and reports restart-only ones', async () => {
    const live = new LiveConfig(env, { WORKER_COUNT: '3' });
    const seen: number[] = [];
    live.onChange((config) => void seen.push(config.workerCount));
    const change = await live.update({ WORKER_COUNT: '8', PORT: '9999' });
    expect(seen).to.deep.equal([8]);
    expect(change.applied).to.deep.equal(['WORKER_COUNT']);
    expect(change.needsRestart).to.deep.equal(['PORT']);
    expect(live.current.port, 'PORT waits for a restart').to.equal(8080);
    // Restart-only values stay pinned across later changes too.
    await live.update({ WORKER_COUNT: '6', PORT: '9999' });
    expect(live.current.port).to.equal(8080);
  });

  it('keeps the running configuration when a change is refused, naming the key and the source', async () => {
    const live = new LiveConfig(env, {}, 'Vault at secret/data/job-manager');
    let calls = 0;
    live.onChange(() => void calls++);
    try {
      await live.update({ WORKER_COUNT: 'lots' });
      expect.fail('should refuse');
    } catch (error) {
      expect((error as Error).message).to.match(/WORKER_COUNT .*\(set in Vault at secret\/data\/job-manager\)/);
    }
    expect(calls).to.equal(0);
    expect(live.current.workerCount).to.equal(5);
  });
});
