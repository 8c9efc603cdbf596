import { randomBytes } from 'node:crypto';
import { FailedTokenThrottle } from '../../src/access-tokens/failed-token-throttle';
import { TEST_ENV } from '../support/test-database';

const REDIS_URL = process.env[TEST_ENV.redisUrl] ?? '';
const describeWithRedis = REDIS_URL ? describe : describe.skip;

describe('FailedTokenThrottle in memory', () => {
  it('blocks an address after `limit` failures within the window, and only that address', () => {
    let now = 1_000_000;
    const throttle = new FailedTokenThrottle({ limit: 3, windowMs: 60_000, now: () => now });
    for (let i = 0; i < 2; i++) throttle.noteFailure('203.0.113.1');
    expect(throttle.isBlocked('203.0.113.1')).toBe(false);
    throttle.noteFailure('203.0.113.1');
    expect(throttle.isBlocked('203.0.113.1')).toBe(true);
    expect(throttle.retryAfterSeconds('203.0.113.1')).toBe(60);
    expect(throttle.isBlocked('203.0.113.2')).toBe(false);
    now += 60_001;
    expect(throttle.isBlocked('203.0.113.1')).toBe(false);
  });
});

describeWithRedis('FailedTokenThrottle shared through Redis', () => {
  const prefix = `keyward:test:ftt:${randomBytes(4).toString('hex')}:`;
  let a: FailedTokenThrottle;
  let b: FailedTokenThrottle;

  beforeAll(async () => {
    a = new FailedTokenThrottle({ limit: 4, redisUrl: REDIS_URL, prefix });
    b = new FailedTokenThrottle({ limit: 4, redisUrl: REDIS_URL, prefix });
    // Both connections (and the subscriptions) are up once a round trip through each works.
    await waitFor(() => ready(a) && ready(b));
  });
  afterAll(async () => {
    await a.close();
    await b.close();
  });

  it('counts failures on both instances together, and both then refuse the address', async () => {
    const ip = `198.51.100.${Math.floor(Math.random() * 200) + 1}`;
    a.noteFailure(ip);
    b.noteFailure(ip);
    a.noteFailure(ip);
    // Neither instance saw four failures itself; the fourth, on b, crosses the shared limit. The
    // two connections reach Redis in either order, so b has taken in at least one of a's.
    await waitFor(
      () => ((b as unknown as { counts: Map<string, { failures: number }> }).counts.get(ip)?.failures ?? 0) >= 2,
    );
    b.noteFailure(ip);
    await waitFor(() => a.isBlocked(ip) && b.isBlocked(ip));
    expect(a.isBlocked(ip)).toBe(true);
    expect(b.isBlocked(ip)).toBe(true);
    expect(a.isBlocked(`${ip}0`)).toBe(false);
  });
});

function ready(throttle: FailedTokenThrottle): boolean {
  const clients = throttle as unknown as { redis?: { status: string }; subscriber?: { status: string } };
  return clients.redis?.status === 'ready' && clients.subscriber?.status === 'ready';
}

async function waitFor(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
