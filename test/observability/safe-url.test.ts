import { expect } from 'chai';
import { ConfigError, resolveConfig } from '../../src/config/config.ts';
import { withoutCredentials } from '../../src/observability/safe-url.ts';

describe('URLs in logs and errors (withoutCredentials)', () => {
  const cases: Array<[string, string]> = [
    ['postgres://app:s3cret@db:5432/x', 'postgres://***@db:5432/x'],
    ['http://db/x', 'http://db/x'],
    // The URL parser refuses these, yet they carry a password.
    ['http://user:PW@host:99999/x', 'http://***@host:99999/x'],
    ['postgres://u:pa/ss@db/x', 'postgres://***@db/x'],
    ['postgres://u:p@ss@bad host/x', 'postgres://***@bad host/x'],
    ['user:PW@host:5432', '***@host:5432'],
    ['not a url', 'not a url'],
  ];
  for (const [input, shown] of cases) {
    it(`shows ${JSON.stringify(input)} as ${JSON.stringify(shown)}`, () => {
      expect(withoutCredentials(input)).to.equal(shown);
    });
  }

  it('keeps the password of an unparseable WEBHOOK_URL out of the start-up error', () => {
    expect(() => resolveConfig({ WEBHOOK_URL: 'http://user:PW@host:99999/x' }))
      .to.throw(ConfigError)
      .with.property('message')
      .that.equals('Invalid configuration: WEBHOOK_URL must be a URL (got "http://***@host:99999/x")');
  });
});
