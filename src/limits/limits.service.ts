import {
  BeforeApplicationShutdown,
  Inject,
  Injectable,
  Logger,
  OnApplicationShutdown,
  OnModuleInit,
  Optional,
} from '@nestjs/common';
import { ShutdownService } from '../lifecycle/shutdown.service';
import { OnEvent } from '@nestjs/event-emitter';
import { InjectDataSource } from '@nestjs/typeorm';
import { randomUUID } from 'node:crypto';
import { Client } from 'pg';
import { DataSource } from 'typeorm';
import { KEYWARD_CONFIG } from '../config/config.constants';
import type { KeywardConfig } from '../config/config';
import { KEY_EVENTS, type KeyEvent } from '../keys/keys.service';
import { PricingService } from '../plugin-system/pricing.service';
import { ProviderRegistry } from '../plugin-system/provider-registry';
import {
  amountOf,
  type LimitPeriod,
  type LimitRefusal,
  type LimitUnit,
  type Reservation,
  type ReservationStore,
  type UsageAmount,
  type WorstCase,
  ZERO,
} from './limits.types';
import { periodEnd } from './period';
import { type PeriodEnds, type RedisCounter, RedisCounters } from './redis-counters';
import { worstCase, type WorstCaseInput } from './worst-case';

/** A limit of a key or a budget of a token, as this instance last read it. */
export interface Counter {
  /** `key:<key id>` or `budget:<budget id>`. */
  id: string;
  scope: 'key' | 'token';
  ownerId: string;
  unit: LimitUnit;
  period: LimitPeriod;
  limit: number;
  used: number;
  reserved: number;
  resetAt: Date | null;
}

type Op =
  | { kind: 'settle'; store: 'postgres' | 'redis'; reservation: Reservation; actual: UsageAmount }
  | {
      kind: 'charge';
      store: 'postgres' | 'redis';
      id: string;
      keyId: string | null;
      accessTokenId: string | null;
      actual: UsageAmount;
      counterIds: string[];
    };

/** Open reservations live this long; one never settled by then counts at its worst case. */
export const RESERVATION_TTL_SECONDS = 3600;
const RELOAD_MS = 5_000;
const SWEEP_MS = 60_000;
/** After a store call failed, this long in memory before the store is tried again. */
const STORE_BACKOFF_MS = 1_000;
const DRAIN_CONCURRENCY = 8;
/** NOTIFY channels after which the limits are read again: budgets (ours) and keys (the vault's). */
export const LIMITS_CHANNEL = 'keyward_limits';
const KEYS_CHANNEL = 'keyward_keys';

class StoreTimeout extends Error {}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new StoreTimeout(`no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

const fmt = (n: number, unit: LimitUnit) =>
  unit === 'usd' ? `$${Number(n.toFixed(6))}` : `${Math.round(n * 1000) / 1000} ${unit}`;

/**
 * Limits of provider keys and budgets of access tokens that hold under concurrency and across
 * instances. Before a call, the gateway reserves the call's worst case against every counter it
 * touches — all or nothing, in one round trip (`keyward_reserve` in PostgreSQL, or one Lua script
 * when REDIS_URL is set); when the call ends it settles to the real usage, or releases. Counters
 * live in the shared store, never in one instance's memory; memory only answers `applies` (no
 * I/O for unlimited traffic) and, while the store cannot be reached, counts conservatively from
 * the last levels it saw, reconciling once the store answers again.
 */
@Injectable()
export class LimitsService implements OnModuleInit, BeforeApplicationShutdown, OnApplicationShutdown {
  private readonly logger = new Logger('Limits');
  private keyCounters = new Map<string, Counter>();
  private tokenCounters = new Map<string, Counter[]>();
  private budgetCounters = new Map<string, Counter>();
  /** Last known used + reserved of each counter: where counting in memory starts from. */
  private readonly levels = new Map<string, number>();
  private readonly redis: RedisCounters | null;
  private storeDownUntil = 0;
  private lastStoreAnswer = 0;
  private lastWarning = 0;
  /** One queue per store, so that an outage of Redis never holds back the database's writes. */
  private readonly queues: Record<'postgres' | 'redis', WriteQueue>;
  private reloadTimer?: NodeJS.Timeout;
  private sweepTimer?: NodeJS.Timeout;
  private reloading: Promise<void> | undefined;
  private stopped = false;
  private listener: Client | null = null;
  private listenTimer?: NodeJS.Timeout;
  private listenDelay = 500;
  private reloadSoon?: NodeJS.Timeout;

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    @Inject(KEYWARD_CONFIG) private readonly config: KeywardConfig,
    private readonly pricing: PricingService,
    private readonly registry: ProviderRegistry,
    @Optional() shutdown?: ShutdownService,
  ) {
    // Settlements go to the store before the database closes (also from beforeApplicationShutdown).
    shutdown?.register('flush', 'limit settlements', () => this.flush(3));
    this.redis = config.redisUrl
      ? new RedisCounters(config.redisUrl, `keyward:limits:`, config.limits.storeTimeoutMs)
      : null;
    const primary = this.redis ? 'redis' : 'postgres';
    const queue = (store: 'postgres' | 'redis') =>
      new WriteQueue(
        (op) => this.apply(op),
        // Only the store that admits requests decides whether they are counted in memory.
        (error) =>
          store === primary
            ? this.storeFailed(error)
            : this.warn(`Settling in ${store} failed (${error.message}); retrying`),
      );
    this.queues = { postgres: queue('postgres'), redis: queue('redis') };
  }

  async onModuleInit(): Promise<void> {
    if (this.redis && !(await this.redis.ready(3000))) {
      this.logger.warn('Redis not ready; limits are counted in memory until it answers');
    }
    await this.reload().catch((error: Error) => this.logger.warn(`Could not load limits: ${error.message}`));
    this.reloadTimer = setInterval(() => void this.reload().catch(() => undefined), RELOAD_MS);
    this.reloadTimer.unref();
    this.sweepTimer = setInterval(() => void this.expireReservations().catch(() => undefined), SWEEP_MS);
    this.sweepTimer.unref();
    await this.listen();
    this.logger.log(`Limits and budgets are reserved in ${this.redis ? 'Redis' : 'PostgreSQL'}`);
  }

  /** Settles what is still queued while the database is still there. */
  async beforeApplicationShutdown(): Promise<void> {
    this.stopped = true;
    clearInterval(this.reloadTimer);
    clearInterval(this.sweepTimer);
    clearTimeout(this.listenTimer);
    clearTimeout(this.reloadSoon);
    const listener = this.listener;
    this.listener = null;
    await listener?.end().catch(() => undefined);
    for (const q of Object.values(this.queues)) q.stop();
    await this.flush(3);
    if (this.pendingSettlements > 0) {
      this.logger.error(`${this.pendingSettlements} limit settlement(s) could not be written`);
    }
  }

  /** After the settlements were flushed (beforeApplicationShutdown runs first). */
  async onApplicationShutdown(): Promise<void> {
    await this.redis?.close();
  }

  // ---- the gateway's calls ------------------------------------------------------------------

  /** In memory, no I/O: does this key or token carry any limit or budget? */
  applies(keyId: string | null, accessTokenId: string | null): boolean {
    return (
      (keyId !== null && this.keyCounters.has(keyId)) ||
      (accessTokenId !== null && (this.tokenCounters.get(accessTokenId)?.length ?? 0) > 0)
    );
  }

  /**
   * In memory: would the key's own limit refuse `amount` by what this instance last saw? A hint
   * for choosing keys (skip those known to be full); `reserve` is what decides.
   */
  keyLikelyFull(keyId: string, amount: UsageAmount): boolean {
    const counter = this.keyCounters.get(keyId);
    if (!counter) return false;
    if (counter.resetAt && counter.resetAt.getTime() <= Date.now()) return false;
    const level = this.levels.get(counter.id) ?? counter.used + counter.reserved;
    return level + amountOf(amount, counter.unit) > counter.limit;
  }

  /** The worst case of one request, priced with the provider's (possibly overridden) prices. */
  async worstCaseFor(input: {
    provider: string;
    model: string | null;
    body: unknown;
    rawLength?: number;
    endpoint?: string;
  }): Promise<WorstCase> {
    const plugin = this.registry.get(input.provider);
    const pricing = plugin ? await this.pricing.table(input.provider).catch(() => plugin.pricing) : undefined;
    const request: WorstCaseInput = {
      body: input.body,
      rawLength: input.rawLength,
      endpoint: input.endpoint,
      model: input.model,
      pricing,
      modelMaxOutputTokens: input.model ? plugin?.maxOutputTokens?.(input.model) : undefined,
      defaultMaxOutputTokens: this.config.limits.defaultMaxOutputTokens,
      unpricedUsdPerMillionTokens: this.config.limits.unpricedUsdPerMillionTokens,
    };
    return worstCase(request);
  }

  /**
   * Reserves `worstCase` against every limit of the key and every budget of the token, all or
   * nothing, in one round trip. A refusal names the counter that would overflow (scope `key`:
   * another key may serve; scope `token`: the token's budget is spent). A worst case flagged
   * `unpriced` is refused wherever a USD counter applies.
   */
  async reserve(input: {
    keyId: string | null;
    accessTokenId: string | null;
    worstCase: UsageAmount & { unpriced?: boolean };
  }): Promise<Reservation | LimitRefusal> {
    const { keyId, accessTokenId } = input;
    const amount: UsageAmount = {
      tokens: Math.max(0, input.worstCase.tokens),
      usd: Math.max(0, input.worstCase.usd),
      requests: Math.max(0, input.worstCase.requests),
    };
    const counters = this.countersOf(keyId, accessTokenId);
    if (input.worstCase.unpriced) {
      const usd = counters.find((c) => c.unit === 'usd');
      if (usd) {
        return this.refusal(usd, this.levels.get(usd.id) ?? usd.used + usd.reserved, 0, usd.resetAt, {
          detail: `The model has no price, so its cost cannot be held against the ${usd.scope === 'key' ? "provider key's" : "token's"} USD ${usd.scope === 'key' ? 'limit' : 'budget'}; an admin can set its price.`,
        });
      }
    }
    const id = randomUUID();
    const base = { ok: true as const, id, keyId, accessTokenId, amount, ended: false };
    if (this.redis && counters.length === 0) return { ...base, store: 'none', counters: [] };
    if (Date.now() < this.storeDownUntil) return this.reserveLocally(base, counters);

    const attempt = this.redis
      ? this.reserveInRedis(id, keyId, accessTokenId, amount, counters)
      : this.reserveInPostgres(id, keyId, accessTokenId, amount);
    try {
      const result = await this.awaitStore(attempt);
      if (result.ok) {
        // Concurrent reservations answer in any order: a level only moves up here (settles and
        // reloads lower it), so counting in memory never starts below what the store last said.
        for (const [counterId, level] of result.levels) {
          this.levels.set(counterId, Math.max(this.levels.get(counterId) ?? 0, level));
        }
        return {
          ...base,
          store: this.redis ? 'redis' : 'postgres',
          counters: result.levels.map(([counterId]) => counterId),
        };
      }
      this.levels.set(result.counter.id, result.used);
      return this.refusal(result.counter, result.used, amountOf(amount, result.counter.unit), result.resetAt);
    } catch (error) {
      this.storeFailed(error as Error);
      // A reservation the store made after we stopped waiting is given straight back.
      if (error instanceof StoreTimeout) {
        void attempt
          .then((late) => {
            if (!late.ok) return;
            const store = this.redis ? 'redis' : 'postgres';
            const counters = late.levels.map(([counterId]) => counterId);
            this.enqueue({ kind: 'settle', store, reservation: { ...base, store, counters }, actual: ZERO });
          })
          .catch(() => undefined);
      }
      return this.reserveLocally(base, counters);
    }
  }

  /**
   * The store's answer within the timeout. A store that is busy rather than away (other calls
   * were answered within the last timeout: a burst queueing on one hot counter) gets up to four
   * timeouts more, since counting in memory while it is merely slow would let instances overshoot.
   */
  private async awaitStore<T>(attempt: Promise<T>): Promise<T> {
    const timeout = this.config.limits.storeTimeoutMs;
    try {
      const answer = await withTimeout(attempt, timeout);
      this.lastStoreAnswer = Date.now();
      return answer;
    } catch (error) {
      if (!(error instanceof StoreTimeout) || Date.now() - this.lastStoreAnswer > timeout) throw error;
      const answer = await withTimeout(attempt, timeout * 4);
      this.lastStoreAnswer = Date.now();
      return answer;
    }
  }

  /**
   * Settles a reservation to the real usage (success, provider error, or an abandoned stream
   * with what it used). Never awaited by the caller: queued, written with retries, flushed at
   * shutdown. A second settle or release of one reservation is ignored.
   */
  settle(reservation: Reservation, actual: UsageAmount): void {
    if (!reservation.ok || reservation.ended) return;
    reservation.ended = true;
    const clean: UsageAmount = {
      tokens: Math.max(0, actual.tokens),
      usd: Math.max(0, actual.usd),
      requests: Math.max(0, actual.requests),
    };
    for (const counterId of this.countersIn(reservation)) {
      const counter = this.counterById(counterId);
      if (!counter) continue;
      const level = this.levels.get(counterId) ?? 0;
      this.levels.set(
        counterId,
        Math.max(0, level - amountOf(reservation.amount, counter.unit) + amountOf(clean, counter.unit)),
      );
    }
    switch (reservation.store) {
      case 'none':
        return;
      case 'postgres':
      case 'redis':
        this.enqueue({ kind: 'settle', store: reservation.store, reservation, actual: clean });
        return;
      case 'local':
        // Admitted in memory while the store was away: the store learns of it as a charge.
        this.charge(
          { keyId: reservation.keyId, accessTokenId: reservation.accessTokenId, actual: clean },
          reservation.id,
        );
        return;
    }
  }

  /** The call failed before the provider did any work: the whole reservation is given back. */
  release(reservation: Reservation): void {
    this.settle(reservation, ZERO);
  }

  /**
   * Counts usage that held no reservation (`POST /api/usage`: the call already happened, so it
   * is counted even past a limit, and later calls are refused). Queued like a settle.
   */
  charge(
    input: { keyId: string | null; accessTokenId: string | null; actual: UsageAmount },
    id: string = randomUUID(),
  ): void {
    const base = { kind: 'charge' as const, id, keyId: input.keyId, accessTokenId: input.accessTokenId };
    if (this.redis) {
      const counterIds = this.countersOf(input.keyId, input.accessTokenId).map((c) => c.id);
      this.enqueue({ ...base, store: 'redis', actual: input.actual, counterIds });
    }
    // The database counts it too: for pages, reports and seeding Redis again.
    this.enqueue({ ...base, store: 'postgres', actual: input.actual, counterIds: [] });
  }

  // ---- for pages and tests -------------------------------------------------------------------

  /** Writes every queued settlement now (tests, shutdown). `rounds` bounds the retries. */
  async flush(rounds = 1): Promise<void> {
    // The database's queue last: a Redis settle queues its database copy.
    await this.queues.redis.flush(rounds);
    await this.queues.postgres.flush(rounds);
  }

  get pendingSettlements(): number {
    return this.queues.postgres.size + this.queues.redis.size;
  }

  /**
   * Live used and reserved of counters held in Redis (`key:<id>`, `budget:<id>`); empty without
   * Redis, where the database rows are the live values.
   */
  async liveLevels(counterIds: string[]): Promise<Map<string, { used: number; reserved: number }>> {
    const out = new Map<string, { used: number; reserved: number }>();
    if (!this.redis || counterIds.length === 0) return out;
    try {
      const read = await withTimeout(
        this.redis.read(counterIds.map((id) => this.redis!.counterKey(id))),
        this.config.limits.storeTimeoutMs,
      );
      for (const id of counterIds) {
        const level = read.get(this.redis.counterKey(id));
        if (level) out.set(id, level);
      }
    } catch {
      // The page shows the database's values instead.
    }
    return out;
  }

  /** Reads every limit and budget again (every 5 s; at once after a change on this instance). */
  reload(): Promise<void> {
    this.reloading ??= this.load().finally(() => (this.reloading = undefined));
    return this.reloading;
  }

  /** A token's budgets changed: Redis forgets their counters, this instance reloads. */
  async budgetsChanged(budgetIds: string[]): Promise<void> {
    if (this.redis && budgetIds.length > 0) {
      await withTimeout(
        this.redis.forget(budgetIds.map((id) => this.redis!.counterKey(`budget:${id}`))),
        this.config.limits.storeTimeoutMs,
      ).catch(() => undefined);
    }
    await this.reload().catch(() => undefined);
  }

  @OnEvent(KEY_EVENTS.changed)
  @OnEvent(KEY_EVENTS.revoked)
  onKeyChanged(_event: KeyEvent): void {
    void this.reload().catch(() => undefined);
  }

  /** Counts expired reservations at their worst case (every minute, on every instance). */
  async expireReservations(): Promise<number> {
    if (this.redis) {
      const expired = await this.redis.expire(this.ends());
      for (const r of expired) {
        this.enqueue({
          kind: 'charge',
          store: 'postgres',
          id: r.id,
          keyId: r.keyId,
          accessTokenId: r.accessTokenId,
          actual: r.amount,
          counterIds: [],
        });
      }
      return expired.length;
    }
    const [row] = await this.dataSource.query<{ n: number }[]>(`SELECT keyward_expire_reservations(500) AS n`);
    return Number(row?.n ?? 0);
  }

  // ---- hearing of changes on other instances ---------------------------------------------

  /**
   * LISTENs for budget and key changes, so that every instance reserves against a new limit
   * within milliseconds, not at the next 5 s reload. Reconnects with backoff.
   */
  private async listen(): Promise<void> {
    const url = (this.dataSource.options as { url?: string }).url;
    if (!url || this.stopped) return;
    const client = new Client({ connectionString: url, application_name: 'keyward-limits-listener' });
    let lost = false;
    const onLost = () => {
      if (lost) return;
      lost = true;
      if (this.listener === client) this.listener = null;
      void client.end().catch(() => undefined);
      if (this.stopped) return;
      clearTimeout(this.listenTimer);
      this.listenTimer = setTimeout(() => void this.listen(), this.listenDelay);
      this.listenTimer.unref();
      this.listenDelay = Math.min(this.listenDelay * 2, 30_000);
    };
    client.on('error', onLost);
    client.on('end', onLost);
    client.on('notification', () => {
      clearTimeout(this.reloadSoon);
      this.reloadSoon = setTimeout(() => void this.reload().catch(() => undefined), 20);
      this.reloadSoon.unref();
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${LIMITS_CHANNEL}`);
      await client.query(`LISTEN ${KEYS_CHANNEL}`);
    } catch {
      onLost();
      return;
    }
    if (lost) return;
    if (this.stopped) {
      await client.end().catch(() => undefined);
      return;
    }
    this.listener = client;
    this.listenDelay = 500;
  }

  // ---- stores -----------------------------------------------------------------------------

  private async reserveInPostgres(
    id: string,
    keyId: string | null,
    accessTokenId: string | null,
    amount: UsageAmount,
  ): Promise<
    { ok: true; levels: [string, number][] } | { ok: false; counter: Counter; used: number; resetAt: Date | null }
  > {
    const [row] = await this.dataSource.query<{ r: ReserveAnswer }[]>(
      `SELECT keyward_reserve($1, $2, $3, $4, $5, $6, $7) AS r`,
      [id, keyId, accessTokenId, amount.tokens, amount.usd, amount.requests, RESERVATION_TTL_SECONDS],
    );
    const r = row.r;
    if (r.ok) return { ok: true, levels: r.counters.map((c) => [c.id, Number(c.used)]) };
    const counterId = `${r.scope === 'key' ? 'key' : 'budget'}:${r.id}`;
    const counter: Counter = this.counterById(counterId) ?? {
      id: counterId,
      scope: r.scope,
      ownerId: r.scope === 'key' ? r.id : (accessTokenId ?? ''),
      unit: r.unit,
      period: r.period,
      limit: Number(r.limit),
      used: Number(r.used),
      reserved: 0,
      resetAt: r.resetAt ? new Date(r.resetAt) : null,
    };
    return {
      ok: false,
      counter: { ...counter, limit: Number(r.limit), unit: r.unit, period: r.period },
      used: Number(r.used),
      resetAt: r.resetAt ? new Date(r.resetAt) : null,
    };
  }

  private async reserveInRedis(
    id: string,
    keyId: string | null,
    accessTokenId: string | null,
    amount: UsageAmount,
    counters: Counter[],
  ): Promise<
    { ok: true; levels: [string, number][] } | { ok: false; counter: Counter; used: number; resetAt: Date | null }
  > {
    const redis = this.redis!;
    const specs: RedisCounter[] = counters.map((c) => ({
      key: redis.counterKey(c.id),
      limit: c.limit,
      unit: c.unit,
      period: c.period,
      seedUsed: c.used,
      seedResetMs: c.resetAt?.getTime() ?? 0,
    }));
    const result = await redis.reserve(
      id,
      { keyId, accessTokenId },
      amount,
      specs,
      this.ends(),
      RESERVATION_TTL_SECONDS * 1000,
    );
    if (result.ok) return { ok: true, levels: counters.map((c, i) => [c.id, result.levels[i]]) };
    const counter = counters[result.index];
    return { ok: false, counter, used: result.level, resetAt: result.resetMs > 0 ? new Date(result.resetMs) : null };
  }

  /**
   * While the store cannot be reached: admit against this instance's memory, starting from the
   * last used + reserved it saw of each counter (never from zero). Other instances count on
   * their own meanwhile, so limits may be overshot by what they admit in that time, never by
   * a restart of the count.
   */
  private reserveLocally(
    base: Omit<Reservation, 'store' | 'counters'>,
    counters: Counter[],
  ): Reservation | LimitRefusal {
    const now = Date.now();
    for (const c of counters) {
      if (c.resetAt && c.resetAt.getTime() <= now) {
        c.resetAt = periodEnd(c.period, new Date(now));
        c.used = 0;
        this.levels.set(c.id, c.reserved);
      }
      const level = this.levels.get(c.id) ?? c.used + c.reserved;
      const amt = amountOf(base.amount, c.unit);
      if (level + amt > c.limit) return this.refusal(c, level, amt, c.resetAt);
    }
    for (const c of counters) {
      this.levels.set(c.id, (this.levels.get(c.id) ?? c.used + c.reserved) + amountOf(base.amount, c.unit));
    }
    return { ...base, store: 'local', counters: counters.map((c) => c.id) };
  }

  private async apply(op: Op): Promise<void> {
    const { limits } = this.config;
    if (op.kind === 'settle') {
      const r = op.reservation;
      if (op.store === 'postgres') {
        await withTimeout(
          this.dataSource.query(`SELECT keyward_settle($1, $2, $3, $4)`, [
            r.id,
            op.actual.tokens,
            op.actual.usd,
            op.actual.requests,
          ]),
          limits.storeTimeoutMs,
        );
        return;
      }
      const keys = this.countersIn(r).map((id) => this.redis!.counterKey(id));
      const changed = await withTimeout(
        this.redis!.settle('settle', r.id, op.actual, keys, this.ends()),
        limits.storeTimeoutMs,
      );
      // The database keeps settled usage for pages and reports, and to seed Redis again.
      if (changed) {
        this.enqueue({
          kind: 'charge',
          store: 'postgres',
          id: r.id,
          keyId: r.keyId,
          accessTokenId: r.accessTokenId,
          actual: op.actual,
          counterIds: [],
        });
      }
      return;
    }
    if (op.store === 'postgres') {
      await withTimeout(
        this.dataSource.query(`SELECT keyward_charge($1, $2, $3, $4, $5, $6)`, [
          op.id,
          op.keyId,
          op.accessTokenId,
          op.actual.tokens,
          op.actual.usd,
          op.actual.requests,
        ]),
        limits.storeTimeoutMs,
      );
      return;
    }
    const keys = op.counterIds.map((id) => this.redis!.counterKey(id));
    await withTimeout(this.redis!.settle('charge', op.id, op.actual, keys, this.ends()), limits.storeTimeoutMs);
  }

  private enqueue(op: Op): void {
    this.queues[op.store].push(op);
  }

  private storeFailed(error: Error): void {
    this.storeDownUntil = Date.now() + STORE_BACKOFF_MS;
    this.warn(
      `${this.redis ? 'Redis' : 'PostgreSQL'} did not answer for limits (${error.message}); counting in memory on this instance from the last known levels until it does`,
    );
  }

  /** At most one warning every 30 s: an outage must be visible, not flood the log. */
  private warn(message: string): void {
    const now = Date.now();
    if (now - this.lastWarning < 30_000) return;
    this.lastWarning = now;
    this.logger.warn(message);
  }

  // ---- the limits as this instance knows them --------------------------------------------

  private async load(): Promise<void> {
    const keys = await this.dataSource.query<
      {
        id: string;
        usage_limit: string;
        usage_unit: LimitUnit;
        usage_period: LimitPeriod;
        usage_current: string;
        usage_reserved: string;
        reset_at: Date | null;
      }[]
    >(
      `SELECT id, usage_limit, usage_unit, usage_period, usage_current, usage_reserved, reset_at
         FROM api_keys WHERE usage_limit IS NOT NULL AND usage_unit IS NOT NULL AND revoked_at IS NULL`,
    );
    const budgets = await this.dataSource.query<
      {
        id: string;
        access_token_id: string;
        unit: LimitUnit;
        period: LimitPeriod;
        limit: string;
        used: string;
        reserved: string;
        reset_at: Date | null;
      }[]
    >(
      `SELECT b.id, b.access_token_id, b.unit, b.period, b."limit", b.used, b.reserved, b.reset_at
         FROM access_token_budgets b JOIN access_tokens t ON t.id = b.access_token_id
        WHERE t.revoked_at IS NULL`,
    );
    const now = Date.now();
    const fresh = (used: string, resetAt: Date | null) => (resetAt && resetAt.getTime() <= now ? 0 : Number(used));
    const keyCounters = new Map<string, Counter>();
    const stale: string[] = [];
    for (const k of keys) {
      const counter: Counter = {
        id: `key:${k.id}`,
        scope: 'key',
        ownerId: k.id,
        unit: k.usage_unit,
        period: k.usage_period,
        limit: Number(k.usage_limit),
        used: fresh(k.usage_current, k.reset_at),
        reserved: Number(k.usage_reserved),
        resetAt: k.reset_at,
      };
      const before = this.keyCounters.get(k.id);
      // A new unit or period, or a count that went down (an admin restarted it): Redis's copy is
      // out of date and is seeded again from the database.
      if (before && (before.unit !== counter.unit || before.period !== counter.period || counter.used < before.used)) {
        stale.push(counter.id);
      }
      keyCounters.set(k.id, counter);
    }
    const tokenCounters = new Map<string, Counter[]>();
    for (const b of budgets) {
      const counter: Counter = {
        id: `budget:${b.id}`,
        scope: 'token',
        ownerId: b.access_token_id,
        unit: b.unit,
        period: b.period,
        limit: Number(b.limit),
        used: fresh(b.used, b.reset_at),
        reserved: Number(b.reserved),
        resetAt: b.reset_at,
      };
      const list = tokenCounters.get(b.access_token_id) ?? [];
      list.push(counter);
      tokenCounters.set(b.access_token_id, list);
    }
    const storeUp = Date.now() >= this.storeDownUntil;
    for (const c of [...keyCounters.values(), ...[...tokenCounters.values()].flat()]) {
      const level = c.used + c.reserved;
      // With Redis the database lags the live counters: memory keeps the higher of the two.
      const known = this.levels.get(c.id);
      this.levels.set(c.id, this.redis || !storeUp ? Math.max(known ?? 0, level) : level);
    }
    if (stale.length > 0 && this.redis) {
      for (const id of stale) this.levels.delete(id);
      await withTimeout(
        this.redis.forget(stale.map((id) => this.redis!.counterKey(id))),
        this.config.limits.storeTimeoutMs,
      ).catch(() => undefined);
    }
    this.keyCounters = keyCounters;
    this.tokenCounters = tokenCounters;
    this.budgetCounters = new Map([...tokenCounters.values()].flat().map((c) => [c.id, c]));
  }

  private countersOf(keyId: string | null, accessTokenId: string | null): Counter[] {
    const out: Counter[] = [];
    const key = keyId ? this.keyCounters.get(keyId) : undefined;
    if (key) out.push(key);
    if (accessTokenId) out.push(...(this.tokenCounters.get(accessTokenId) ?? []));
    return out;
  }

  private countersIn(reservation: Reservation): readonly string[] {
    return reservation.counters;
  }

  private counterById(counterId: string): Counter | undefined {
    return counterId.startsWith('key:') ? this.keyCounters.get(counterId.slice(4)) : this.budgetCounters.get(counterId);
  }

  private ends(): PeriodEnds {
    const now = new Date();
    return {
      now: now.getTime(),
      daily: periodEnd('daily', now)!.getTime(),
      weekly: periodEnd('weekly', now)!.getTime(),
      monthly: periodEnd('monthly', now)!.getTime(),
    };
  }

  private refusal(
    counter: Pick<Counter, 'scope' | 'unit' | 'period' | 'limit'>,
    used: number,
    amount: number,
    resetAt: Date | null,
    extra: { detail?: string } = {},
  ): LimitRefusal {
    const whose = counter.scope === 'key' ? "The provider key's" : "This token's";
    const what = counter.scope === 'key' ? 'limit' : 'budget';
    const period = counter.period === 'never' || counter.period === 'total' ? 'total' : counter.period;
    return {
      ok: false,
      scope: counter.scope,
      unit: counter.unit,
      period: counter.period,
      limit: counter.limit,
      used,
      resetAt,
      detail:
        extra.detail ??
        `${whose} ${period} ${what} of ${fmt(counter.limit, counter.unit)} does not leave room for this request: ` +
          `${fmt(used, counter.unit)} used or reserved, and it may use up to ${fmt(amount, counter.unit)}` +
          (resetAt ? `; it starts over at ${resetAt.toISOString()}.` : '.'),
    };
  }
}

/**
 * Writes of one store, a few at a time, off the request path. What fails stays queued, in
 * order, and is retried with growing pauses (up to 10 s) until the store answers.
 */
class WriteQueue {
  private ops: Op[] = [];
  private draining: Promise<void> | undefined;
  private retryTimer?: NodeJS.Timeout;
  private failures = 0;
  private stopped = false;
  private listener: Client | null = null;
  private listenTimer?: NodeJS.Timeout;
  private listenDelay = 500;
  private reloadSoon?: NodeJS.Timeout;

  constructor(
    private readonly apply: (op: Op) => Promise<void>,
    private readonly failed: (error: Error) => void,
  ) {}

  get size(): number {
    return this.ops.length + (this.draining ? 1 : 0);
  }

  push(op: Op): void {
    this.ops.push(op);
    if (!this.retryTimer) void this.drain();
  }

  /** Writes what is queued now, retrying up to `rounds` times, 200 ms apart. */
  async flush(rounds: number): Promise<void> {
    if (this.draining) await this.draining;
    for (let i = 0; i < rounds && this.ops.length > 0; i++) {
      await this.drain();
      if (this.ops.length > 0 && i < rounds - 1) await new Promise((r) => setTimeout(r, 200));
    }
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  private drain(): Promise<void> {
    this.draining ??= (async () => {
      while (this.ops.length > 0) {
        const batch = this.ops.splice(0, DRAIN_CONCURRENCY);
        const results = await Promise.allSettled(batch.map((op) => this.apply(op)));
        const failed = batch.filter((_, i) => results[i].status === 'rejected');
        if (failed.length === 0) {
          this.failures = 0;
          continue;
        }
        this.ops.unshift(...failed);
        this.failed((results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason as Error);
        this.failures++;
        if (!this.stopped) {
          const delay = Math.min(10_000, 200 * 2 ** Math.min(this.failures, 6));
          clearTimeout(this.retryTimer);
          this.retryTimer = setTimeout(() => {
            this.retryTimer = undefined;
            void this.drain();
          }, delay);
          this.retryTimer.unref();
        }
        return;
      }
    })().finally(() => (this.draining = undefined));
    return this.draining;
  }
}

interface ReserveAnswer {
  ok: boolean;
  counters: { id: string; used: string | number }[];
  scope: 'key' | 'token';
  id: string;
  unit: LimitUnit;
  period: LimitPeriod;
  limit: string | number;
  used: string | number;
  resetAt: string | null;
}

export type { ReservationStore };
