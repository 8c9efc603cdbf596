import { Logger, OnModuleDestroy } from '@nestjs/common';
import Redis from 'ioredis';
import { randomUUID } from 'node:crypto';

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

/**
 * Adds a count done locally while Redis was away to the shared window. A window Redis lost (it
 * restarted empty) is recreated from what this instance last knew of it, plus its own count.
 * ARGV: local count, count last known, ms left in the window.
 */
const ADD_SCRIPT = `
local count
if redis.call('EXISTS', KEYS[1]) == 0 then
  count = tonumber(ARGV[2]) + tonumber(ARGV[1])
  redis.call('SET', KEYS[1], count, 'PX', ARGV[3])
else
  count = redis.call('INCRBY', KEYS[1], ARGV[1])
  if redis.call('PTTL', KEYS[1]) < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
  end
end
return count
`;

type RedisWithTake = Redis & {
  keywardTake(key: string, windowMs: number, limit: number): Promise<[number, number, number]>;
  keywardAdd(key: string, count: number, known: number, ttlMs: number): Promise<number>;
};

export interface RedisRateLimiterOptions extends RateLimiterOptions {
  /** Prepended to every key; tests use their own so that runs never share counters. */
  prefix?: string;
  /** A command slower than this is a failure (the caller never waits longer). Default 100 ms. */
  commandTimeoutMs?: number;
}

/** Consecutive failures that open the circuit. */
const OPEN_AFTER_FAILURES = 3;
/** While open, Redis is probed (PING) this often, off the request path. */
const PROBE_MS = 1_000;
/** Each instance says it is alive this often; one silent for 3 periods is no longer counted. */
const HEARTBEAT_MS = 5_000;

/** What this instance last heard from Redis about a key, and what it allowed on its own since. */
interface Known {
  /** The shared count Redis reported with the last answer. */
  count: number;
  resetAt: number;
  /** Calls allowed locally while the circuit was open, in this window. */
  local: number;
  /** The most this instance allows alone in this window (its share of what was left). */
  share: number;
}

/**
 * Counters shared by every instance through Redis (`keyward:rl:<key>`), behind a circuit
 * breaker so that a dead or hung Redis costs the gateway no latency:
 * - every command has a short timeout (`KEYWARD_REDIS_TIMEOUT_MS`, 100 ms) and no queue;
 * - after 3 failures in a row the circuit opens: calls are counted locally at once, and a PING
 *   every second (not a client's request) probes Redis; the first answer closes it again;
 * - counted locally, an instance stays conservative: it continues from the last count Redis gave
 *   for the key, and allows only its share of what was left, `floor((limit - count) / N)`, where
 *   N is the number of instances that sent a heartbeat within the last 15 s (at least 1). A
 *   window that ends during the outage starts at `floor(limit / N)`. N instances together thus
 *   never allow more than the limit in a window, however long the outage;
 * - when Redis is back, what was allowed locally is added to the shared counters.
 * One log line when Redis goes and one when it is back.
 */
export class RedisRateLimiter implements RateLimiter, OnModuleDestroy {
  private readonly logger = new Logger('RateLimiter');
  private readonly redis: RedisWithTake;
  private readonly prefix: string;
  private readonly windowMs: number;
  private readonly known = new Map<string, Known>();
  private readonly instanceId = randomUUID();
  private instances = 1;
  private instancesSeenAt = 0;
  private failures = 0;
  private state: 'closed' | 'open' = 'closed';
  private openedAt = 0;
  private probeTimer: NodeJS.Timeout | undefined;
  private readonly heartbeatTimer: NodeJS.Timeout;
  private readonly sweeper: NodeJS.Timeout;
  private closed = false;

  constructor(
    url: string,
    options: RedisRateLimiterOptions = {},
    private readonly now: () => number = Date.now,
  ) {
    this.prefix = options.prefix ?? 'keyward:rl:';
    this.windowMs = options.windowMs ?? WINDOW_MS;
    this.redis = new Redis(url, {
      enableOfflineQueue: false,
      commandTimeout: options.commandTimeoutMs ?? 100,
      maxRetriesPerRequest: 0,
      retryStrategy: (attempt) => Math.min(attempt * 200, 2000),
    }) as RedisWithTake;
    this.redis.defineCommand('keywardTake', { numberOfKeys: 1, lua: TAKE_SCRIPT });
    this.redis.defineCommand('keywardAdd', { numberOfKeys: 1, lua: ADD_SCRIPT });
    // Connection errors are the circuit's business; ioredis would otherwise print each one.
    this.redis.on('error', () => undefined);
    this.redis.on('ready', () => {
      if (this.state === 'open') void this.probe();
      void this.heartbeat();
    });
    this.heartbeatTimer = setInterval(() => void this.heartbeat(), HEARTBEAT_MS);
    this.heartbeatTimer.unref();
    this.sweeper = setInterval(() => this.sweep(), this.windowMs);
    this.sweeper.unref();
  }

  /** `closed` while Redis counts, `open` while this instance counts alone. */
  get circuit(): 'closed' | 'open' {
    return this.state;
  }

  /** Instances this one believes share the budget (from the heartbeats). */
  get instanceCount(): number {
    return this.instances;
  }

  /** Resolves once connected; rejects after `timeoutMs` (the limiter still works, locally). */
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
    await this.heartbeat();
  }

  async take(key: string, limitPerMinute: number): Promise<RateLimitResult> {
    checkLimit(limitPerMinute);
    if (this.state === 'open' || this.redis.status !== 'ready') {
      if (this.state === 'closed') this.failed(new Error(`connection ${this.redis.status}`));
      return this.takeLocally(key, limitPerMinute);
    }
    try {
      const [allowed, count, ttl] = await this.redis.keywardTake(this.prefix + key, this.windowMs, limitPerMinute);
      this.failures = 0;
      this.remember(key, count, ttl);
      return allowed === 1
        ? { allowed: true, remaining: Math.max(0, limitPerMinute - count), retryAfterSeconds: 0 }
        : { allowed: false, remaining: 0, retryAfterSeconds: Math.max(1, Math.ceil(ttl / 1000)) };
    } catch (error) {
      if (this.closed) throw error;
      this.failed(error as Error);
      return this.takeLocally(key, limitPerMinute);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.probeTimer);
    clearInterval(this.heartbeatTimer);
    clearInterval(this.sweeper);
    this.known.clear();
    // QUIT waits for a connection; one that is still (re)connecting is simply dropped.
    if (this.redis.status !== 'ready' || this.state === 'open') {
      this.redis.disconnect();
      return;
    }
    try {
      await this.redis.zrem(`${this.prefix}instances`, this.instanceId);
      await this.redis.quit();
    } catch {
      this.redis.disconnect();
    }
  }

  onModuleDestroy(): Promise<void> {
    return this.close();
  }

  private remember(key: string, count: number, ttlMs: number): void {
    const entry = this.known.get(key);
    const resetAt = this.now() + Math.max(0, ttlMs);
    if (entry) {
      entry.count = count;
      entry.resetAt = resetAt;
      entry.local = 0;
      entry.share = -1;
    } else {
      this.known.set(key, { count, resetAt, local: 0, share: -1 });
    }
  }

  /** The conservative local count while Redis is away (see the class comment). */
  private takeLocally(key: string, limit: number): RateLimitResult {
    const now = this.now();
    let entry = this.known.get(key);
    if (!entry || entry.resetAt <= now) {
      entry = { count: 0, resetAt: now + this.windowMs, local: 0, share: -1 };
      this.known.set(key, entry);
    }
    if (entry.share < 0) {
      const left = Math.max(0, limit - entry.count);
      entry.share = Math.floor(left / Math.max(1, this.instances));
    }
    if (entry.local >= entry.share) {
      return { allowed: false, remaining: 0, retryAfterSeconds: Math.max(1, Math.ceil((entry.resetAt - now) / 1000)) };
    }
    entry.local++;
    return { allowed: true, remaining: Math.max(0, entry.share - entry.local), retryAfterSeconds: 0 };
  }

  private failed(error: Error): void {
    this.failures++;
    if (this.state === 'open' || this.failures < OPEN_AFTER_FAILURES) return;
    this.state = 'open';
    this.openedAt = this.now();
    this.logger.warn(
      `Redis is unavailable (${error.message}); counting rate limits on this instance, each of ${this.instances} instance(s) allowing its share, until it answers`,
    );
    this.scheduleProbe();
  }

  private scheduleProbe(): void {
    if (this.closed || this.probeTimer) return;
    this.probeTimer = setTimeout(() => {
      this.probeTimer = undefined;
      void this.probe();
    }, PROBE_MS);
    this.probeTimer.unref();
  }

  private async probe(): Promise<void> {
    if (this.closed || this.state !== 'open') return;
    try {
      if (this.redis.status !== 'ready') throw new Error(`connection ${this.redis.status}`);
      await this.redis.ping();
      await this.reconcile();
    } catch {
      this.scheduleProbe();
      return;
    }
    this.state = 'closed';
    this.failures = 0;
    this.logger.log(`Redis is back after ${this.now() - this.openedAt} ms; rate limits are shared again`);
  }

  /** Adds what was allowed locally to the shared counters, so the window's total stays right. */
  private async reconcile(): Promise<void> {
    const now = this.now();
    for (const [key, entry] of this.known) {
      if (entry.local === 0 || entry.resetAt <= now) continue;
      const count = await this.redis.keywardAdd(this.prefix + key, entry.local, entry.count, entry.resetAt - now);
      entry.count = count;
      entry.local = 0;
      entry.share = -1;
    }
  }

  private async heartbeat(): Promise<void> {
    if (this.closed || this.redis.status !== 'ready') return;
    const set = `${this.prefix}instances`;
    const now = Date.now();
    try {
      const [, , [, count]] = (await this.redis
        .multi()
        .zadd(set, now, this.instanceId)
        .zremrangebyscore(set, '-inf', now - 3 * HEARTBEAT_MS)
        .zcard(set)
        .pexpire(set, 3 * HEARTBEAT_MS)
        .exec()) as [unknown, unknown, [unknown, number], unknown];
      // More instances count at once; fewer only once the higher count is stale (a Redis that
      // restarted empty has not heard every instance's heartbeat yet).
      const seen = Math.max(1, Number(count));
      if (seen >= this.instances || now - this.instancesSeenAt > 3 * HEARTBEAT_MS) {
        this.instances = seen;
        this.instancesSeenAt = now;
      }
    } catch {
      // the circuit notices failures on the request path
    }
  }

  private sweep(): void {
    const now = this.now();
    for (const [key, entry] of this.known) if (entry.resetAt <= now) this.known.delete(key);
  }
}

/** Redis when `redisUrl` is configured (shared by all instances), else this instance's memory. */
export async function createRateLimiter(
  redisUrl: string | undefined,
  options: RedisRateLimiterOptions = {},
  logger = new Logger('RateLimiter'),
) {
  if (!redisUrl) return new MemoryRateLimiter();
  const limiter = new RedisRateLimiter(redisUrl, options);
  try {
    await limiter.ready();
    logger.log('Rate limits are counted in Redis, shared by every instance');
  } catch (error) {
    logger.warn(`${(error as Error).message}; counting rate limits on this instance until it answers`);
  }
  return limiter;
}
