import { Logger, OnModuleDestroy } from '@nestjs/common';
import { ThrottlerStorageService, type ThrottlerStorage } from '@nestjs/throttler';
import Redis from 'ioredis';

/**
 * Counts a hit and says whether the key is blocked, atomically, in Redis's clock:
 * a fixed window of `ttl` ms; once `limit` hits are exceeded the key is blocked for
 * `blockDuration` ms. Returns {hits, ms until the window ends, blocked 0|1, ms until unblocked}.
 */
const INCREMENT_SCRIPT = `
local hitsKey = KEYS[1]
local blockKey = KEYS[2]
local ttl = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local blockDuration = tonumber(ARGV[3])
local blockTtl = redis.call('PTTL', blockKey)
if blockTtl > 0 then
  local hits = tonumber(redis.call('GET', hitsKey) or '0')
  local windowTtl = redis.call('PTTL', hitsKey)
  if windowTtl < 0 then windowTtl = 0 end
  return {hits, windowTtl, 1, blockTtl}
end
local hits = redis.call('INCR', hitsKey)
if hits == 1 then redis.call('PEXPIRE', hitsKey, ttl) end
local windowTtl = redis.call('PTTL', hitsKey)
if windowTtl < 0 then
  redis.call('PEXPIRE', hitsKey, ttl)
  windowTtl = ttl
end
if hits > limit then
  redis.call('SET', blockKey, '1', 'PX', blockDuration)
  redis.call('DEL', hitsKey)
  return {hits, windowTtl, 1, blockDuration}
end
return {hits, windowTtl, 0, 0}
`;

type ThrottlerStorageRecord = Awaited<ReturnType<ThrottlerStorage['increment']>>;

type RedisWithIncrement = Redis & {
  keywardThrottle(
    hitsKey: string,
    blockKey: string,
    ttl: number,
    limit: number,
    blockDuration: number,
  ): Promise<[number, number, number, number]>;
};

/**
 * @nestjs/throttler's storage in Redis, so that the sign-in limit holds across every instance
 * (the published Redis storage does not support Nest 12). While Redis is unreachable each
 * instance counts in its own memory rather than letting attempts through, and says so.
 */
export class RedisThrottlerStorage implements ThrottlerStorage, OnModuleDestroy {
  private readonly logger = new Logger('ThrottlerStorage');
  private readonly redis: RedisWithIncrement;
  private readonly fallback = new ThrottlerStorageService();
  private lastWarning = 0;
  private closed = false;

  constructor(
    url: string,
    private readonly prefix = 'keyward:throttle:',
  ) {
    this.redis = new Redis(url, {
      enableOfflineQueue: false,
      commandTimeout: 500,
      maxRetriesPerRequest: 1,
      retryStrategy: (attempt) => Math.min(attempt * 200, 5000),
    }) as RedisWithIncrement;
    this.redis.defineCommand('keywardThrottle', { numberOfKeys: 2, lua: INCREMENT_SCRIPT });
    this.redis.on('error', (error: Error) => this.warn(`Redis unavailable (${error.message})`));
  }

  async increment(
    key: string,
    ttl: number,
    limit: number,
    blockDuration: number,
    throttlerName: string,
  ): Promise<ThrottlerStorageRecord> {
    const base = `${this.prefix}${throttlerName}:${key}`;
    try {
      if (this.redis.status !== 'ready') await this.ready(1000);
      const [hits, windowMs, blocked, blockMs] = await this.redis.keywardThrottle(
        `${base}:hits`,
        `${base}:block`,
        ttl,
        limit,
        blockDuration > 0 ? blockDuration : ttl,
      );
      return {
        totalHits: hits,
        timeToExpire: Math.ceil(windowMs / 1000),
        isBlocked: blocked === 1,
        timeToBlockExpire: Math.ceil(blockMs / 1000),
      };
    } catch (error) {
      this.warn(`Redis throttling failed (${(error as Error).message}); counting in memory on this instance`);
      return this.fallback.increment(key, ttl, limit, blockDuration, throttlerName);
    }
  }

  async ready(timeoutMs = 3000): Promise<void> {
    if (this.redis.status === 'ready') return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.redis.off('ready', onReady);
        reject(new Error(`Redis not ready after ${timeoutMs} ms`));
      }, timeoutMs);
      const onReady = () => {
        clearTimeout(timer);
        resolve();
      };
      this.redis.once('ready', onReady);
    });
  }

  async onModuleDestroy(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.fallback.onApplicationShutdown?.();
    if (this.redis.status !== 'ready') {
      this.redis.disconnect();
      return;
    }
    await this.redis.quit().catch(() => this.redis.disconnect());
  }

  private warn(message: string): void {
    const now = Date.now();
    if (this.closed || now - this.lastWarning < 30_000) return;
    this.lastWarning = now;
    this.logger.warn(message);
  }
}
