import { Logger, OnModuleDestroy } from '@nestjs/common';
import Redis from 'ioredis';

export interface RateLimitResult {
  allowed: boolean;
  /** Calls left in the current window after this one. */
  remaining: number;
  /** 0 when allowed; otherwise whole seconds until the window resets (at least 1). */
  retryAfterSeconds: number;
}

/**
 * Per-token request budget for the gateway. Both implementations use the same algorithm, a
 * fixed window: the first call after a window ended opens a new 60 s window, each allowed call
 * counts one, and once `limitPerMinute` calls were allowed the rest are refused until the window
 * ends. Refused calls do not count, so a client that backs off gets its full budget back at the
 * reset. (A fixed window admits up to twice the limit across a window boundary; a sliding log
 * would be exact but costs memory per call, which a gateway in front of 1M/min tokens cannot.)
 */
export interface RateLimiter {
  take(key: string, limitPerMinute: number): Promise<RateLimitResult>;
  close(): Promise<void>;
}

export interface RateLimiterOptions {
  /** Window length; 60 s in production, shorter in tests. */
  windowMs?: number;
}

const WINDOW_MS = 60_000;

function checkLimit(limit: number): void {
  if (!Number.isInteger(limit) || limit < 1) throw new RangeError('limitPerMinute must be a whole number from 1');
}

interface Window {
  count: number;
  resetAt: number;
}

/**
 * One instance's counters, in a Map. Node runs `take` to completion before the next call, so the
 * count is exact however many calls arrive at once; it is not shared with other instances.
 */
export class MemoryRateLimiter implements RateLimiter, OnModuleDestroy {
  private readonly windows = new Map<string, Window>();
  private readonly windowMs: number;
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    options: RateLimiterOptions = {},
    private readonly now: () => number = Date.now,
  ) {
    this.windowMs = options.windowMs ?? WINDOW_MS;
    // Forget windows that ended, so that tokens no longer used cost no memory.
    this.sweeper = setInterval(() => this.sweep(), this.windowMs);
    this.sweeper.unref();
  }

  async take(key: string, limitPerMinute: number): Promise<RateLimitResult> {
    return this.takeNow(key, limitPerMinute);
  }

  /** The synchronous core, also used by the Redis limiter while Redis is unreachable. */
  takeNow(key: string, limitPerMinute: number): RateLimitResult {
    checkLimit(limitPerMinute);
    const now = this.now();
    let window = this.windows.get(key);
    if (!window || window.resetAt <= now) {
      window = { count: 0, resetAt: now + this.windowMs };
      this.windows.set(key, window);
    }
    if (window.count >= limitPerMinute) {
      return { allowed: false, remaining: 0, retryAfterSeconds: Math.max(1, Math.ceil((window.resetAt - now) / 1000)) };
    }
    window.count += 1;
    return { allowed: true, remaining: limitPerMinute - window.count, retryAfterSeconds: 0 };
  }

  private sweep(): void {
    const now = this.now();
    for (const [key, window] of this.windows) if (window.resetAt <= now) this.windows.delete(key);
  }

  close(): Promise<void> {
    clearInterval(this.sweeper);
    this.windows.clear();
    return Promise.resolve();
  }

  onModuleDestroy(): Promise<void> {
    return this.close();
  }
}

/**
 * Check-and-count in one atomic step, so that instances sharing Redis share one exact budget.
 * The window is a key with a TTL set on its first count (Redis's clock, not the instances').
 * Returns {allowed 0|1, count, ms until reset}.
 */
const TAKE_SCRIPT = `
local limit = tonumber(ARGV[2])
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count >= limit then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
    ttl = tonumber(ARGV[1])
  end
  return {0, count, ttl}
end
count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {1, count, ttl}
`;

type RedisWithTake = Redis & {
  keywardTake(key: string, windowMs: number, limit: number): Promise<[number, number, number]>;
};

export interface RedisRateLimiterOptions extends RateLimiterOptions {
  /** Prepended to every key; tests use their own so that runs never share counters. */
  prefix?: string;
}

/**
 * Counters shared by every instance through Redis (`keyward:rl:<key>`). If Redis cannot be
 * reached, calls are not queued (that would stall the gateway) and not waved through: each
 * instance falls back to its own in-memory counters until Redis answers again, and says so.
 */
export class RedisRateLimiter implements RateLimiter, OnModuleDestroy {
  private readonly logger = new Logger('RateLimiter');
  private readonly redis: RedisWithTake;
  private readonly prefix: string;
  private readonly windowMs: number;
  private readonly fallback: MemoryRateLimiter;
  private lastWarning = 0;
  private closed = false;

  constructor(url: string, options: RedisRateLimiterOptions = {}) {
    this.prefix = options.prefix ?? 'keyward:rl:';
    this.windowMs = options.windowMs ?? WINDOW_MS;
    this.fallback = new MemoryRateLimiter({ windowMs: this.windowMs });
    this.redis = new Redis(url, {
      enableOfflineQueue: false,
      commandTimeout: 500,
      maxRetriesPerRequest: 1,
      retryStrategy: (attempt) => Math.min(attempt * 200, 5000),
    }) as RedisWithTake;
    this.redis.defineCommand('keywardTake', { numberOfKeys: 1, lua: TAKE_SCRIPT });
    this.redis.on('error', (error: Error) => this.warn(`Redis unavailable (${error.message})`));
  }

  /** Resolves once connected; rejects after `timeoutMs` (the limiter still works, in memory). */
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

  async take(key: string, limitPerMinute: number): Promise<RateLimitResult> {
    checkLimit(limitPerMinute);
    try {
      const [allowed, count, ttl] = await this.redis.keywardTake(this.prefix + key, this.windowMs, limitPerMinute);
      return allowed === 1
        ? { allowed: true, remaining: Math.max(0, limitPerMinute - count), retryAfterSeconds: 0 }
        : { allowed: false, remaining: 0, retryAfterSeconds: Math.max(1, Math.ceil(ttl / 1000)) };
    } catch (error) {
      if (this.closed) throw error;
      this.warn(`Redis rate limit failed (${(error as Error).message}); counting in memory on this instance`);
      return this.fallback.takeNow(key, limitPerMinute);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.fallback.close();
    // QUIT waits for a connection; one that is still (re)connecting is simply dropped.
    if (this.redis.status !== 'ready') {
      this.redis.disconnect();
      return;
    }
    try {
      await this.redis.quit();
    } catch {
      this.redis.disconnect();
    }
  }

  onModuleDestroy(): Promise<void> {
    return this.close();
  }

  /** At most one warning every 30 s: an outage must be visible, not flood the log. */
  private warn(message: string): void {
    const now = Date.now();
    if (this.closed || now - this.lastWarning < 30_000) return;
    this.lastWarning = now;
    this.logger.warn(message);
  }
}

/** Redis when `redisUrl` is configured (shared by all instances), else this instance's memory. */
export async function createRateLimiter(redisUrl: string | undefined, logger = new Logger('RateLimiter')) {
  if (!redisUrl) return new MemoryRateLimiter();
  const limiter = new RedisRateLimiter(redisUrl);
  try {
    await limiter.ready();
    logger.log('Rate limits are counted in Redis, shared by every instance');
  } catch (error) {
    logger.warn(`${(error as Error).message}; counting rate limits in memory until it answers`);
  }
  return limiter;
}
