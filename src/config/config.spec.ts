import { ConfigError, loadConfig } from './config';

describe('loadConfig', () => {
  it('defaults to 127.0.0.1:3000, a local data folder and the embedded database', () => {
    const sut = loadConfig({});
    expect(sut).toMatchObject({ host: '127.0.0.1', port: 3000, publicUrl: 'http://127.0.0.1:3000' });
    expect(sut.databaseUrl).toBeUndefined();
    expect(sut.dataDir).toMatch(/\.keyward$/);
  });

  it('names every wrong variable and what it allows, in one message', () => {
    let error: unknown;
    try {
      loadConfig({ PORT: '99999', DATABASE_URL: 'mysql://x', LOG_LEVEL: 'loud', KEYWARD_ADMIN_EMAIL: 'a@b.test' });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const message = (error as Error).message;
    expect(message).toMatch(/PORT must be/);
    expect(message).toMatch(/DATABASE_URL must be a PostgreSQL URL/);
    expect(message).toMatch(/LOG_LEVEL must be one of/);
    expect(message).toMatch(/KEYWARD_ADMIN_PASSWORD/);
  });

  it('never repeats a secret value in its message', () => {
    expect(() => loadConfig({ KEYWARD_MASTER_KEYS: 'not-a-key-material-xyz' })).toThrow(ConfigError);
    try {
      loadConfig({ KEYWARD_MASTER_KEYS: 'not-a-key-material-xyz' });
    } catch (e) {
      expect((e as Error).message).not.toContain('not-a-key-material-xyz');
    }
  });
});
