import Redis from 'ioredis';
import { randomBytes } from 'node:crypto';
import { MemoryRateLimiter, RedisRateLimiter, type RateLimiter } from '../../src/access-tokens/rate-limiter';
import { TEST_ENV } from '../support/test-database';

// Found (or not) by the global setup; see findRedis() there.
const REDIS_URL = process.env[TEST_ENV.redisUrl] ?? '';
const describeWithRedis = REDIS_URL ? describe : describe.skip;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Fires `n` take() calls at once and counts what was allowed. */
async function burst(limiters: RateLimiter[], key: string, n: number, limit: number) {
  const results = await Promise.all(
    Array.from({ length: n }, (_, i) => limiters[i % limiters.length].take(key, limit)),
  );
  return { allowed: results.filter((r) => r.allowed), refused: results.filter((r) => !r.allowed) };
}

describe('MemoryRateLimiter (one instance, fixed 60 s window)', () => {
  let now = 1_000_000;
  const sut = new MemoryRateLimiter({}, () => now);
  afterAll(() => sut.close());

  it('allows exactly the limit under 200 concurrent calls', async () => {
    const { allowed, refused } = await burst([sut], 'burst', 200, 50);
    expect(allowed).toHaveLength(50);
    expect(refused).toHaveLength(150);
    expect(allowed.map((r) => r.remaining).sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(allowed.every((r) => r.retryAfterSeconds === 0)).toBe(true);
    expect(refused.every((r) => r.remaining === 0 && r.retryAfterSeconds === 60)).toBe(true);
  });

  it('says how long until the window resets, and resets it then', async () => {
    for (let i = 0; i < 3; i++) expect((await sut.take('reset', 3)).allowed).toBe(true);
    now += 45_000;
    expect(await sut.take('reset', 3)).toEqual({ allowed: false, remaining: 0, retryAfterSeconds: 15 });
    now += 14_500;
    expect((await sut.take('reset', 3)).retryAfterSeconds).toBe(1);
    now += 500;
    expect(await sut.take('reset', 3)).toEqual({ allowed: true, remaining: 2, retryAfterSeconds: 0 });
  });

  it('keeps separate budgets per key and refuses a nonsensical limit', async () => {
    expect((await sut.take('a', 1)).allowed).toBe(true);
    expect((await sut.take('a', 1)).allowed).toBe(false);
    expect((await sut.take('b', 1)).allowed).toBe(true);
    await expect(sut.take('c', 0)).rejects.toThrow(RangeError);
  });

  it('resets on the real clock too', async () => {
    const short = new MemoryRateLimiter({ windowMs: 200 });
    try {
      expect((await short.take('k', 1)).allowed).toBe(true);
      expect((await short.take('k', 1)).allowed).toBe(false);
      await sleep(250);
      expect((await short.take('k', 1)).allowed).toBe(true);
    } finally {
      await short.close();
    }
  });
});

describeWithRedis('RedisRateLimiter (shared by instances)', () => {
  const prefix = `keyward:rl:test-${randomBytes(6).toString('hex')}:`;
  let redis: Redis;
  const limiters: RedisRateLimiter[] = [];
  const open = async (options: { prefix?: string; windowMs?: number } = {}) => {
    const limiter = new RedisRateLimiter(REDIS_URL, { prefix, ...options });
    limiters.push(limiter);
    await limiter.ready();
    return limiter;
  };

  beforeAll(async () => {
    redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await redis.connect();
    } catch {
      throw new Error(`Redis is not running at ${REDIS_URL}: redis-server --daemonize yes --port 6379 --save ""`);
    }
  });
  afterAll(async () => {
    await Promise.all(limiters.map((l) => l.close()));
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length > 0) await redis.del(...keys);
    await redis.quit();
  });

  it('allows exactly the limit under 200 concurrent calls', async () => {
    const sut = await open();
    const { allowed, refused } = await burst([sut], 'burst', 200, 50);
    expect(allowed).toHaveLength(50);
    expect(refused).toHaveLength(150);
    expect(allowed.map((r) => r.remaining).sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    // Refused calls are not counted: the counter stops at the limit.
    expect(await redis.get(`${prefix}burst`)).toBe('50');
    for (const r of refused) {
      expect(r.remaining).toBe(0);
      expect(r.retryAfterSeconds).toBeGreaterThanOrEqual(59);
      expect(r.retryAfterSeconds).toBeLessThanOrEqual(60);
    }
    const ttl = await redis.pttl(`${prefix}burst`);
    expect(ttl).toBeGreaterThan(55_000);
    expect(ttl).toBeLessThanOrEqual(60_000);
  });

  it('gives two instances one budget (the multi-instance case)', async () => {
    const a = await open();
    const b = await open();
    const { allowed, refused } = await burst([a, b], 'shared', 200, 60);
    expect(allowed).toHaveLength(60);
    expect(refused).toHaveLength(140);
    // Both instances had a share; neither got a budget of its own.
    expect((await a.take('shared', 60)).allowed).toBe(false);
    expect((await b.take('shared', 60)).allowed).toBe(false);
  });

  it('resets when the window ends and says when that is', async () => {
    const sut = await open({ windowMs: 1500 });
    expect(await sut.take('reset', 2)).toEqual({ allowed: true, remaining: 1, retryAfterSeconds: 0 });
    expect(await sut.take('reset', 2)).toEqual({ allowed: true, remaining: 0, retryAfterSeconds: 0 });
    const refused = await sut.take('reset', 2);
    expect(refused).toEqual({ allowed: false, remaining: 0, retryAfterSeconds: 2 });
    await sleep(1600);
    expect(await sut.take('reset', 2)).toEqual({ allowed: true, remaining: 1, retryAfterSeconds: 0 });
  });

  it('keys its counters under keyward:rl: by default', async () => {
    const key = `default-prefix-${randomBytes(6).toString('hex')}`;
    const sut = new RedisRateLimiter(REDIS_URL);
    limiters.push(sut);
    await sut.ready();
    try {
      await sut.take(key, 5);
      expect(await redis.get(`keyward:rl:${key}`)).toBe('1');
    } finally {
      await redis.del(`keyward:rl:${key}`);
    }
  });

  it('keeps limiting, in memory, while Redis cannot be reached', async () => {
    // Nothing listens on port 1: every call fails at once and falls back.
    const sut = new RedisRateLimiter('redis://127.0.0.1:1', { prefix });
    limiters.push(sut);
    await expect(sut.ready(300)).rejects.toThrow(/not ready/);
    const { allowed } = await burst([sut], 'down', 20, 5);
    expect(allowed).toHaveLength(5);
  });
});
