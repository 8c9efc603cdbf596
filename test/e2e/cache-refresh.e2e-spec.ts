import { AccessTokensService } from '../../src/access-tokens/access-tokens.service';
import { startTestApp, type TestApp } from '../support/test-app';

/**
 * The gateway's caches reload ahead of expiry: in the last quarter of an entry's life, a call is
 * answered from memory and starts a reload in the background, so under steady traffic no call
 * waits for the database when an entry runs out. A change made behind Keyward's back (no
 * notification) is therefore seen at three quarters of the TTL, never later than before.
 */
describe('cache refresh ahead of expiry', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(async () => {
    jest.useRealTimers();
    await t?.close();
  });

  it('answers a token from memory in its last quarter and picks up a revocation made in the database meanwhile', async () => {
    const tokens = t.app.get(AccessTokensService);
    const { accessToken, token } = await tokens.create({ name: 'refresh-ahead' }, null);
    // Only the clock is faked: timers, sockets and the database run for real.
    const started = Date.now();
    jest.useFakeTimers({
      now: started,
      doNotFake: [
        'setTimeout',
        'setInterval',
        'setImmediate',
        'nextTick',
        'queueMicrotask',
        'clearTimeout',
        'clearInterval',
        'clearImmediate',
        'hrtime',
        'performance',
      ],
    });
    expect((await tokens.resolve(token))?.id).toBe(accessToken.id);
    // Revoked behind the service's back: no notification reaches its cache.
    await t.dataSource.query(`UPDATE access_tokens SET revoked_at = now() WHERE id = $1`, [accessToken.id]);

    // Half way: still the cached answer, and no reload.
    jest.setSystemTime(started + 15_000);
    expect((await tokens.resolve(token))?.id).toBe(accessToken.id);

    // In the last quarter: answered at once from memory (the call does not wait for the reload) ...
    jest.setSystemTime(started + 24_000);
    const answer = tokens.resolve(token);
    expect((await answer)?.id).toBe(accessToken.id);
    // ... and the reload in the background sees the revocation before the entry would have run out.
    let after: unknown = 'not yet';
    for (let i = 0; i < 100 && after !== null; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      after = await tokens.resolve(token);
    }
    expect(after).toBeNull();
    expect(Date.now() - started).toBeLessThan(30_000);
    jest.useRealTimers();
  });
});
