import { Logger } from '@nestjs/common';
import Redis from 'ioredis';

export interface FailedTokenThrottleOptions {
  /** Failures per address per window before that address is refused. */
  limit: number;
  windowMs?: number;
  /** Shares counts and blocks between instances; without it each instance counts alone. */
  redisUrl?: string;
  /** Prepended to Redis keys and the channel; tests use their own. */
  prefix?: string;
  now?: () => number;
}

interface Count {
  failures: number;
  resetAt: number;
}

const WINDOW_MS = 60_000;

/** Counts one failure in a fixed window; returns {failures, ms left in the window}. */
const FAIL_SCRIPT = `
local failures = redis.call('INCR', KEYS[1])
if failures == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {failures, ttl}
`;
const MAX_TRACKED = 100_000;

/**
 * Slows token guessing at the gateway: an address that presented `limit` failing tokens within
 * a minute is refused until the minute is over. `isBlocked` is synchronous and never waits for
 * Redis — the gateway asks it on every request. With Redis, each failure is also counted there
 * (fire and forget) and the shared count comes back into this instance's view; an instance that
 * sees an address cross the limit tells the others on a channel, so every instance refuses it.
 */
export class FailedTokenThrottle {
  private readonly logger = new Logger('FailedTokenThrottle');
  private readonly counts = new Map<string, Count>();
  private readonly limit: number;
  private readonly windowMs: number;
  private readonly now: () => number;
  private readonly prefix: string;
  private redis?: Redis;
  private subscriber?: Redis;
  private lastWarning = 0;

  constructor(options: FailedTokenThrottleOptions) {
    this.limit = options.limit;
    this.windowMs = options.windowMs ?? WINDOW_MS;
    this.now = options.now ?? Date.now;
    this.prefix = options.prefix ?? 'keyward:ftt:';
    if (options.redisUrl) this.connect(options.redisUrl);
  }

  isBlocked(ip: string): boolean {
    const count = this.counts.get(ip);
    if (!count) return false;
    if (count.resetAt <= this.now()) {
      this.counts.delete(ip);
      return false;
    }
    return count.failures >= this.limit;
  }

  /** Seconds until a blocked address may try again (0 when it is not blocked). */
  retryAfterSeconds(ip: string): number {
    const count = this.counts.get(ip);
    if (!count || !this.isBlocked(ip)) return 0;
    return Math.max(1, Math.ceil((count.resetAt - this.now()) / 1000));
  }

  noteFailure(ip: string): void {
    const now = this.now();
    let count = this.counts.get(ip);
    if (!count || count.resetAt <= now) {
      if (this.counts.size >= MAX_TRACKED) this.sweep(now);
      count = { failures: 0, resetAt: now + this.windowMs };
      this.counts.set(ip, count);
    }
    count.failures += 1;
    if (this.redis?.status === 'ready') void this.share(ip);
  }

  async close(): Promise<void> {
    for (const client of [this.redis, this.subscriber]) {
      if (!client) continue;
      if (client.status === 'ready') await client.quit().catch(() => client.disconnect());
      else client.disconnect();
    }
    this.counts.clear();
  }

  private connect(url: string): void {
    const options = {
      enableOfflineQueue: false,
      commandTimeout: 500,
      maxRetriesPerRequest: 1,
      retryStrategy: (attempt: number) => Math.min(attempt * 200, 5000),
    };
    this.redis = new Redis(url, options);
    this.redis.defineCommand('keywardFail', { numberOfKeys: 1, lua: FAIL_SCRIPT });
    this.subscriber = new Redis(url, { ...options, enableOfflineQueue: true, commandTimeout: undefined });
    for (const client of [this.redis, this.subscriber]) {
      client.on('error', (error: Error) => this.warn(`Redis unavailable (${error.message}); counting in memory`));
    }
    void this.subscriber.subscribe(`${this.prefix}blocked`).catch(() => undefined);
    this.subscriber.on('message', (_channel: string, message: string) => {
      try {
        const { ip, ttlMs } = JSON.parse(message) as { ip: string; ttlMs: number };
        if (typeof ip === 'string' && typeof ttlMs === 'number' && ttlMs > 0) {
          this.counts.set(ip, { failures: this.limit, resetAt: this.now() + Math.min(ttlMs, this.windowMs) });
        }
      } catch {
        // Not ours: ignore.
      }
    });
  }

  /** Adds this failure to the shared count and takes the shared count into this instance's view. */
  private async share(ip: string): Promise<void> {
    const redis = this.redis as Redis & { keywardFail(key: string, windowMs: number): Promise<[number, number]> };
    try {
      const [failures, ttl] = await redis.keywardFail(`${this.prefix}${ip}`, this.windowMs);
      const remaining = ttl > 0 ? ttl : this.windowMs;
      const local = this.counts.get(ip);
      if (local && failures > local.failures) {
        local.failures = failures;
        local.resetAt = this.now() + remaining;
      }
      if (failures === this.limit) {
        await redis.publish(`${this.prefix}blocked`, JSON.stringify({ ip, ttlMs: remaining }));
      }
    } catch (error) {
      this.warn(`Redis count failed (${(error as Error).message}); counting in memory`);
    }
  }

  private sweep(now: number): void {
    for (const [ip, count] of this.counts) if (count.resetAt <= now) this.counts.delete(ip);
    if (this.counts.size >= MAX_TRACKED) this.counts.clear();
  }

  private warn(message: string): void {
    const now = Date.now();
    if (now - this.lastWarning < 30_000) return;
    this.lastWarning = now;
    this.logger.warn(message);
  }
}

/** The injection token of the application's one FailedTokenThrottle (see SecurityModule). */
export const FAILED_TOKEN_THROTTLE = Symbol('FAILED_TOKEN_THROTTLE');
