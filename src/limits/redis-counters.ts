import Redis from 'ioredis';
import type { UsageAmount } from './limits.types';

/**
 * One counter as the Redis scripts take it: `key` is its hash, seeded from the database the first
 * time Redis sees it (u used, r reserved, t reset epoch ms or 0, n unit, p period).
 */
export interface RedisCounter {
  key: string;
  limit: number;
  unit: string;
  period: string;
  seedUsed: number;
  seedResetMs: number;
}

/** Ends of the current daily, weekly and monthly periods (epoch ms), for counters that roll over. */
export interface PeriodEnds {
  now: number;
  daily: number;
  weekly: number;
  monthly: number;
}

/**
 * Shared Lua: start a counter whose period ended from zero. `ends` are ARGV positions 1..4
 * (now, daily, weekly, monthly end).
 */
const ROLL = `
local function roll(key)
  local t = tonumber(redis.call('HGET', key, 't') or '0')
  if t > 0 and t <= tonumber(ARGV[1]) then
    local p = redis.call('HGET', key, 'p')
    local nxt = 0
    if p == 'daily' then nxt = ARGV[2] elseif p == 'weekly' then nxt = ARGV[3] elseif p == 'monthly' then nxt = ARGV[4] end
    redis.call('HSET', key, 'u', '0', 't', nxt)
  end
end
local function amount(unit, tokens, usd, requests)
  if unit == 'tokens' then return tokens elseif unit == 'requests' then return requests else return usd end
end
`;

/**
 * All or nothing over every counter of one request. KEYS: counters..., reservation hash, expiry
 * zset. ARGV: now, daily, weekly, monthly ends, ttl ms, reservation id, tokens, usd, requests,
 * key id, token id ('' for none), then per counter: limit, unit, period, seed used, seed reset. Returns {1, level...} (each
 * counter's used + reserved after) or {0, index, level, reset} for the first that does not fit.
 */
const RESERVE = `${ROLL}
local n = #KEYS - 2
local tokens, usd, requests = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local levels = {}
for i = 1, n do
  local b = 11 + (i - 1) * 5
  if redis.call('EXISTS', KEYS[i]) == 0 then
    redis.call('HSET', KEYS[i], 'u', ARGV[b + 4], 'r', '0', 't', ARGV[b + 5], 'n', ARGV[b + 2], 'p', ARGV[b + 3])
  end
  roll(KEYS[i])
  local unit = redis.call('HGET', KEYS[i], 'n')
  local level = tonumber(redis.call('HGET', KEYS[i], 'u')) + tonumber(redis.call('HGET', KEYS[i], 'r'))
  local amt = amount(unit, tokens, usd, requests)
  if level + amt > tonumber(ARGV[b + 1]) then
    return {0, i, tostring(level), redis.call('HGET', KEYS[i], 't')}
  end
  levels[i] = tostring(level + amt)
end
local rk = KEYS[n + 1]
redis.call('HSET', rk, '_tokens', ARGV[7], '_usd', ARGV[8], '_requests', ARGV[9], '_key', ARGV[10], '_token', ARGV[11])
for i = 1, n do
  local amt = amount(redis.call('HGET', KEYS[i], 'n'), tokens, usd, requests)
  redis.call('HINCRBYFLOAT', KEYS[i], 'r', amt)
  redis.call('HSET', rk, KEYS[i], tostring(amt))
end
redis.call('ZADD', KEYS[n + 2], tonumber(ARGV[1]) + tonumber(ARGV[5]), ARGV[6])
return {1, unpack(levels)}
`;

/**
 * Ends a reservation, or counts a charge. KEYS: reservation hash (or charge marker), expiry zset,
 * counters... ARGV: now, daily, weekly, monthly ends, mode ('settle' | 'charge'), id, tokens, usd,
 * requests. A settle of a reservation that is gone (settled, or expired and counted) changes
 * nothing; a charge counts once per id. A counter that is gone is left to be seeded again.
 */
const SETTLE = `${ROLL}
local rk = KEYS[1]
if ARGV[5] == 'settle' then
  if redis.call('EXISTS', rk) == 0 then return 0 end
else
  if not redis.call('SET', rk, '1', 'NX', 'EX', 172800) then return 0 end
end
local tokens, usd, requests = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
for i = 3, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    roll(KEYS[i])
    local held = 0
    if ARGV[5] == 'settle' then held = tonumber(redis.call('HGET', rk, KEYS[i]) or '0') end
    local r = tonumber(redis.call('HGET', KEYS[i], 'r')) - held
    if r < 1e-12 then r = 0 end
    redis.call('HSET', KEYS[i], 'r', tostring(r))
    redis.call('HINCRBYFLOAT', KEYS[i], 'u', amount(redis.call('HGET', KEYS[i], 'n'), tokens, usd, requests))
  end
end
if ARGV[5] == 'settle' then
  redis.call('DEL', rk)
  redis.call('ZREM', KEYS[2], ARGV[6])
end
return 1
`;

/**
 * Reservations no instance settled in time count at their worst case (as in PostgreSQL).
 * KEYS: expiry zset. ARGV: now, daily, weekly, monthly ends, prefix of reservation hashes, max.
 * Returns the reservations expired, each as {id, tokens, usd, requests, key id, token id, counters...}.
 */
const EXPIRE = `${ROLL}
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[6]))
local out = {}
for _, id in ipairs(ids) do
  local rk = ARGV[5] .. id
  local fields = redis.call('HGETALL', rk)
  local entry = {id, '0', '0', '0', '', ''}
  for j = 1, #fields, 2 do
    local f, v = fields[j], fields[j + 1]
    if f == '_tokens' then entry[2] = v elseif f == '_usd' then entry[3] = v elseif f == '_requests' then entry[4] = v
    elseif f == '_key' then entry[5] = v elseif f == '_token' then entry[6] = v
    elseif redis.call('EXISTS', f) == 1 then
      roll(f)
      local r = tonumber(redis.call('HGET', f, 'r')) - tonumber(v)
      if r < 1e-12 then r = 0 end
      redis.call('HSET', f, 'r', tostring(r))
      redis.call('HINCRBYFLOAT', f, 'u', v)
      table.insert(entry, f)
    end
  end
  redis.call('DEL', rk)
  redis.call('ZREM', KEYS[1], id)
  table.insert(out, entry)
end
return out
`;

type Scripted = Redis & {
  keywardReserve(...args: (string | number)[]): Promise<(string | number)[]>;
  keywardSettle(...args: (string | number)[]): Promise<number>;
  keywardExpire(...args: (string | number)[]): Promise<string[][]>;
};

export type RedisReserveResult =
  { ok: true; levels: number[] } | { ok: false; index: number; level: number; resetMs: number };

/** The counters of limits and budgets in Redis, each operation one script (one round trip). */
export class RedisCounters {
  private readonly redis: Scripted;

  constructor(
    url: string,
    private readonly prefix: string,
    commandTimeoutMs: number,
  ) {
    this.redis = new Redis(url, {
      enableOfflineQueue: false,
      commandTimeout: commandTimeoutMs,
      maxRetriesPerRequest: 1,
      retryStrategy: (attempt) => Math.min(attempt * 200, 5000),
      lazyConnect: false,
    }) as Scripted;
    this.redis.defineCommand('keywardReserve', { lua: RESERVE });
    this.redis.defineCommand('keywardSettle', { lua: SETTLE });
    this.redis.defineCommand('keywardExpire', { numberOfKeys: 1, lua: EXPIRE });
    // Errors surface on each call (and the service counts in memory); an unhandled 'error'
    // event would only crash the process.
    this.redis.on('error', () => undefined);
  }

  counterKey(id: string): string {
    return `${this.prefix}c:${id}`;
  }

  private reservationKey(id: string): string {
    return `${this.prefix}r:${id}`;
  }

  private get expiryKey(): string {
    return `${this.prefix}expiry`;
  }

  async reserve(
    id: string,
    owners: { keyId: string | null; accessTokenId: string | null },
    amount: UsageAmount,
    counters: RedisCounter[],
    ends: PeriodEnds,
    ttlMs: number,
  ): Promise<RedisReserveResult> {
    const keys = [...counters.map((c) => c.key), this.reservationKey(id), this.expiryKey];
    const args = [
      ends.now,
      ends.daily,
      ends.weekly,
      ends.monthly,
      ttlMs,
      id,
      amount.tokens,
      amount.usd,
      amount.requests,
      owners.keyId ?? '',
      owners.accessTokenId ?? '',
      ...counters.flatMap((c) => [c.limit, c.unit, c.period, c.seedUsed, c.seedResetMs]),
    ];
    const result = await this.redis.keywardReserve(keys.length, ...keys, ...args);
    if (Number(result[0]) === 1) return { ok: true, levels: result.slice(1).map(Number) };
    return { ok: false, index: Number(result[1]) - 1, level: Number(result[2]), resetMs: Number(result[3] ?? 0) };
  }

  /** True when it changed the counters (false: already settled, or a charge already counted). */
  async settle(
    mode: 'settle' | 'charge',
    id: string,
    actual: UsageAmount,
    counterKeys: string[],
    ends: PeriodEnds,
  ): Promise<boolean> {
    const marker = mode === 'settle' ? this.reservationKey(id) : `${this.prefix}charge:${id}`;
    const keys = [marker, this.expiryKey, ...counterKeys];
    const done = await this.redis.keywardSettle(
      keys.length,
      ...keys,
      ends.now,
      ends.daily,
      ends.weekly,
      ends.monthly,
      mode,
      id,
      actual.tokens,
      actual.usd,
      actual.requests,
    );
    return Number(done) === 1;
  }

  /** Counts expired reservations at their worst case; returns them (for the database mirror). */
  async expire(
    ends: PeriodEnds,
    max = 500,
  ): Promise<{ id: string; keyId: string | null; accessTokenId: string | null; amount: UsageAmount }[]> {
    const rows = await this.redis.keywardExpire(
      this.expiryKey,
      ends.now,
      ends.daily,
      ends.weekly,
      ends.monthly,
      `${this.prefix}r:`,
      max,
    );
    return rows.map(([id, tokens, usd, requests, keyId, accessTokenId]) => ({
      id,
      keyId: keyId || null,
      accessTokenId: accessTokenId || null,
      amount: { tokens: Number(tokens), usd: Number(usd), requests: Number(requests) },
    }));
  }

  /** Levels (used, reserved) of counters as Redis holds them; absent ones are left out. */
  async read(counterKeys: string[]): Promise<Map<string, { used: number; reserved: number }>> {
    const out = new Map<string, { used: number; reserved: number }>();
    if (counterKeys.length === 0) return out;
    const pipeline = this.redis.pipeline();
    for (const key of counterKeys) pipeline.hmget(key, 'u', 'r');
    const results = (await pipeline.exec()) ?? [];
    results.forEach(([error, value], i) => {
      const [u, r] = (value as (string | null)[] | null) ?? [];
      if (!error && u !== null && u !== undefined)
        out.set(counterKeys[i], { used: Number(u), reserved: Number(r ?? 0) });
    });
    return out;
  }

  /** Forgets counters (their limit changed): the next reservation seeds them from the database. */
  async forget(counterKeys: string[]): Promise<void> {
    if (counterKeys.length > 0) await this.redis.del(...counterKeys);
  }

  async ready(timeoutMs: number): Promise<boolean> {
    if (this.redis.status === 'ready') return true;
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        this.redis.off('ready', onReady);
        resolve(false);
      }, timeoutMs);
      const onReady = () => {
        clearTimeout(timer);
        resolve(true);
      };
      this.redis.once('ready', onReady);
    });
  }

  async close(): Promise<void> {
    if (this.redis.status !== 'ready') {
      this.redis.disconnect();
      return;
    }
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}
