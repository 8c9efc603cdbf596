import { Injectable, Logger, OnModuleInit, Optional } from '@nestjs/common';
import { OnEvent } from '@nestjs/event-emitter';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { AlertEventsService } from '../alerts/alert-events.service';
import { CHANNELS, ChangeFeedService, REFRESH_AHEAD_AT } from '../database/change-feed';
import { DatabaseHealth } from '../database/database-health';
import { ShutdownService } from '../lifecycle/shutdown.service';
import { SecretsService } from '../crypto/secrets.service';
import type { UsagePeriod, UsageUnit } from '../keys/api-key.entity';
import { KEY_EVENTS, type KeyEvent, secretAad } from '../keys/keys.service';
import type { ProviderErrorType } from '../plugin-system/provider-plugin';
import { LimitsService } from '../limits/limits.service';

/** A key as the gateway holds it; the secret is decrypted on first use, never written anywhere. */
export interface PooledKey {
  id: string;
  provider: string;
  hint: string;
  /** Envelope and version until the first request needs the secret (see KeyPool.secretOf). */
  sealed: { envelope: Buffer; version: number } | null;
  secret: string | null;
  organizationId: string | undefined;
  priority: number;
  weight: number;
  expiresAt: number | null;
  limit: number | null;
  unit: UsageUnit | null;
  period: UsagePeriod | null;
  /** The limit counter as the database had it at load, plus batches written since. */
  counted: number;
  /** Requests handed this key that have not been recorded yet (for `requests` limits). */
  inFlight: number;
  cooldownUntil: number;
  healthy: boolean;
  /** Transient failures in a row (5xx, timeouts): cool-downs grow with them. */
  failures: number;
  /** After a cool-down a troubled key gets one trial request at a time (half-open). */
  trialInFlight: boolean;
}

export type Unusable = 'expired' | 'unhealthy' | 'cooling-down' | 'over-limit';

interface Loaded {
  generation: number;
  loadedAt: number;
  keys: Promise<PooledKey[]>;
  /** The list once `keys` has resolved: the hot path reads it without awaiting. */
  value?: PooledKey[];
  /** A reload ahead of expiry is under way. */
  refreshing?: boolean;
}

const TTL_MS = 30_000;
/** The least a call can add to a limit: a key at its limit takes no more. */
const ONE_REQUEST = { tokens: 1, usd: 0, requests: 1 };
const OUT_OF_CREDIT_MS = 10 * 60_000;
/** The first cool-down after a transient failure; it doubles with each failure in a row. */
const FIRST_COOLDOWN_MS = 1_000;
const MAX_COOLDOWN_MS = 30_000;
/** Cool-downs this long are written to the key's row, so other instances and restarts see them. */
const SHARED_COOLDOWN_MS = 30_000;
/** While serving a last good list during an outage, a reload is tried at most this often. */
const STALE_RETRY_MS = 1_000;

/**
 * The gateway's view of the vault: per provider, the active keys with their secrets, so that a
 * request needs no database round trip. A change to a key on this instance empties the cache
 * before the change's call returns (EventEmitter listeners run synchronously); other instances
 * hear of it through the change feed (`keyward_keys`), and everything is reloaded after the feed
 * reconnects. A load that started before an invalidation never fills the cache, so a revoked key
 * cannot come back from a stale read. While PostgreSQL is unreachable the last list that loaded
 * keeps serving (within the outage window, see DatabaseHealth); without one, `keys` rejects with
 * DatabaseUnavailableError, which the gateway answers with 503 and `retry-after`.
 */
@Injectable()
export class KeyPool implements OnModuleInit {
  private readonly logger = new Logger('KeyPool');
  private readonly loaded = new Map<string, Loaded>();
  /** Per provider, the last list that loaded: what an outage serves. */
  private readonly lastGood = new Map<string, PooledKey[]>();
  private generation = 0;

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly secrets: SecretsService,
    private readonly alerts: AlertEventsService,
    @Optional() private readonly feed?: ChangeFeedService,
    @Optional() private readonly health?: DatabaseHealth,
    @Optional() private readonly shutdown?: ShutdownService,
    @Optional() private readonly limits?: LimitsService,
  ) {}

  onModuleInit(): void {
    this.feed?.subscribe(CHANNELS.keys, (keyId) => this.forget(keyId));
    this.feed?.onReconnect(() => this.invalidate());
  }

  @OnEvent(KEY_EVENTS.changed)
  @OnEvent(KEY_EVENTS.revoked)
  onKeyChanged(event: KeyEvent): void {
    this.invalidate(event.provider);
    this.dropLastGood(event.keyId);
  }

  invalidate(provider?: string): void {
    this.generation++;
    if (provider) this.loaded.delete(provider);
    else this.loaded.clear();
  }

  /** The provider's keys when a fresh list is cached, for a call that need not wait on a promise. */
  cachedKeys(provider: string): PooledKey[] | undefined {
    const entry = this.loaded.get(provider);
    const ttl = this.feed ? this.feed.ttl(TTL_MS) : TTL_MS;
    if (!entry || entry.generation !== this.generation) return undefined;
    const age = Date.now() - entry.loadedAt;
    if (age >= ttl) return undefined;
    if (age >= ttl * REFRESH_AHEAD_AT) this.refreshAhead(provider, entry);
    return entry.value;
  }

  async keys(provider: string): Promise<PooledKey[]> {
    const entry = this.loaded.get(provider);
    const ttl = this.feed ? this.feed.ttl(TTL_MS) : TTL_MS;
    const age = entry ? Date.now() - entry.loadedAt : Infinity;
    if (entry && entry.generation === this.generation && age < ttl) {
      if (age >= ttl * REFRESH_AHEAD_AT) this.refreshAhead(provider, entry);
      return entry.keys;
    }
    const stale = this.lastGood.get(provider);
    if (stale && this.health && !this.health.up) {
      // Known down: no query (a hung server would hold the request); the prober notices the return.
      if (this.health.canServeStale()) return stale;
      throw this.health.unavailable();
    }
    const generation = this.generation;
    const loading = this.load(provider);
    // With something to fall back on, a load may not wait on a hung server; without, it waits.
    const keys = (this.health && stale ? this.health.guard(loading) : loading).then(
      (list) => {
        if (generation === this.generation) this.lastGood.set(provider, list);
        return list;
      },
      (error: unknown) => {
        this.health?.reportFailure(error);
        if (stale && this.health?.canServeStale()) {
          // Serve the last good list for a moment, then try again.
          this.loaded.set(provider, {
            generation,
            loadedAt: Date.now() - ttl + STALE_RETRY_MS,
            keys: Promise.resolve(stale),
            value: stale,
          });
          return stale;
        }
        throw this.health ? this.health.unavailable() : error;
      },
    );
    const fresh: Loaded = { generation, loadedAt: Date.now(), keys };
    this.loaded.set(provider, fresh);
    keys.then(
      (list) => (fresh.value = list),
      () => {
        if (this.loaded.get(provider) === fresh) this.loaded.delete(provider);
      },
    );
    return keys;
  }

  /**
   * Reloads a list in the last quarter of its life, in the background: under steady traffic no
   * call waits for the database when the list runs out. The old list serves until the new one
   * is in; a failure leaves it to run out and be reloaded (or fall back) the usual way.
   */
  private refreshAhead(provider: string, entry: Loaded): void {
    if (entry.refreshing || entry.value === undefined || this.health?.up === false) return;
    entry.refreshing = true;
    const generation = entry.generation;
    this.load(provider).then(
      (list) => {
        if (generation !== this.generation || this.loaded.get(provider) !== entry) return;
        this.lastGood.set(provider, list);
        this.loaded.set(provider, { generation, loadedAt: Date.now(), keys: Promise.resolve(list), value: list });
      },
      () => undefined,
    );
  }

  /** A notification about one key (or, with no id, about all of them). */
  private forget(keyId: string): void {
    this.invalidate();
    this.dropLastGood(keyId || undefined);
  }

  /** A changed key must not come back from the outage fallback either. */
  private dropLastGood(keyId: string | undefined): void {
    if (!keyId) {
      this.lastGood.clear();
      return;
    }
    for (const [provider, list] of this.lastGood) {
      if (list.some((k) => k.id === keyId))
        this.lastGood.set(
          provider,
          list.filter((k) => k.id !== keyId),
        );
    }
  }

  /** The plaintext secret, for the provider call about to be made with it. */
  secretOf(key: PooledKey): string {
    if (key.secret === null) {
      const { envelope, version } = key.sealed!;
      key.secret = this.secrets.open(envelope, secretAad(key, version)).toString('utf8');
      key.sealed = null;
    }
    return key.secret;
  }

  /**
   * The plaintext secret, or null when it cannot be decrypted (a master key missing or wrong):
   * that key is set aside on this instance, an alert is raised, and the next key serves.
   */
  trySecretOf(key: PooledKey): string | null {
    try {
      return this.secretOf(key);
    } catch (error) {
      key.healthy = false;
      this.logger.error(
        `The ${key.provider} key ${key.hint} (${key.id}) cannot be decrypted; it is skipped: ${(error as Error).message}`,
      );
      void this.alerts.raise({
        kind: 'key.undecryptable',
        severity: 'critical',
        keyId: key.id,
        message: `The ${key.provider} key ${key.hint} cannot be decrypted (is its master key version configured?); the gateway skips it.`,
      });
      return null;
    }
  }

  /** Why a key cannot serve now, or null when it can. */
  unusable(key: PooledKey, now: number): Unusable | null {
    if (!key.healthy) return 'unhealthy';
    if (key.expiresAt !== null && key.expiresAt <= now) return 'expired';
    if (key.cooldownUntil > now) return 'cooling-down';
    if (key.trialInFlight) return 'cooling-down';
    // The shared counters decide (LimitsService.reserve); this only skips keys known to be full.
    if (key.limit !== null && this.limits?.keyLikelyFull(key.id, ONE_REQUEST)) return 'over-limit';
    return null;
  }

  /**
   * Orders usable keys for one request: by priority (lower first), and within one priority by a
   * weighted random draw, so that weight 3 takes about three times the traffic of weight 1.
   */
  order(keys: PooledKey[]): PooledKey[] {
    const byPriority = new Map<number, PooledKey[]>();
    for (const k of keys) {
      const group = byPriority.get(k.priority);
      if (group) group.push(k);
      else byPriority.set(k.priority, [k]);
    }
    const out: PooledKey[] = [];
    for (const priority of [...byPriority.keys()].sort((a, b) => a - b)) {
      const group = byPriority.get(priority)!;
      if (group.length === 1) {
        out.push(group[0]);
        continue;
      }
      // Efraimidis–Spirakis: sort by u^(1/w), a weighted shuffle in one pass.
      const drawn = group.map((k) => ({ k, score: Math.random() ** (1 / k.weight) }));
      drawn.sort((a, b) => b.score - a.score);
      for (const d of drawn) out.push(d.k);
    }
    return out;
  }

  /** A provider answer about a key: dead keys leave the pool, limited ones cool down. */
  async markFailure(
    key: PooledKey,
    type: ProviderErrorType,
    retryAfterMs: number | undefined,
    reason: string,
    othersUsable = true,
  ): Promise<void> {
    // A call cut by this instance's own shutdown says nothing about the key.
    if (this.shutdown?.draining) return;
    if (type === 'invalid_key') {
      key.healthy = false;
      await this.dataSource
        .query(
          `UPDATE api_keys SET health = 'unhealthy', health_reason = $2, health_changed_at = now() WHERE id = $1 AND health = 'healthy'`,
          [key.id, reason.slice(0, 300)],
        )
        .catch((error: Error) => this.logger.error(`Could not mark key ${key.id} unhealthy: ${error.message}`));
      await this.alerts.raise({
        kind: 'key.invalid',
        severity: 'critical',
        keyId: key.id,
        message: `The ${key.provider} key ${key.hint} was refused as invalid; it is no longer used until it verifies again.`,
        details: { reason: reason.slice(0, 300) },
      });
      return;
    }
    if (type === 'out_of_credit') {
      this.coolDown(key, retryAfterMs ?? OUT_OF_CREDIT_MS);
      await this.alerts.raise({
        kind: 'key.out-of-credit',
        severity: 'warning',
        keyId: key.id,
        message: `The ${key.provider} key ${key.hint} is out of credit; it rests for ${Math.round((retryAfterMs ?? OUT_OF_CREDIT_MS) / 60_000)} min.`,
      });
      return;
    }
    // Rate limits, 5xx and timeouts are transient. One blip never takes the last usable key out
    // (`othersUsable` false: no cool-down at all); after that the cool-down doubles with each
    // failure in a row, from 1 s, and ends in a single trial request (half-open).
    key.failures++;
    key.trialInFlight = false;
    if (retryAfterMs !== undefined) return this.coolDown(key, retryAfterMs);
    if (key.failures === 1 && !othersUsable) return;
    this.coolDown(key, Math.min(MAX_COOLDOWN_MS, FIRST_COOLDOWN_MS * 2 ** (key.failures - 1)));
  }

  /** A request on the key succeeded: a troubled key is trusted again. */
  markSuccess(key: PooledKey): void {
    if (key.failures === 0 && !key.trialInFlight) return;
    key.failures = 0;
    key.trialInFlight = false;
    key.cooldownUntil = 0;
  }

  /** Called when a key is picked for a request: a key that failed before serves one trial at a time. */
  picked(key: PooledKey): void {
    if (key.failures >= 2) key.trialInFlight = true;
  }

  /** A picked key's call ended without saying anything about the key (client left, bad request). */
  unpicked(key: PooledKey): void {
    key.trialInFlight = false;
  }

  private coolDown(key: PooledKey, ms: number): void {
    key.cooldownUntil = Math.max(key.cooldownUntil, Date.now() + ms);
    if (ms < SHARED_COOLDOWN_MS) return;
    void this.dataSource
      .query(`UPDATE api_keys SET cooldown_until = $2 WHERE id = $1`, [key.id, new Date(key.cooldownUntil)])
      .catch(() => undefined);
  }

  private async load(provider: string): Promise<PooledKey[]> {
    const rows = await this.dataSource.query<
      {
        id: string;
        provider: string;
        secret_hint: string;
        secret_ciphertext: Buffer;
        secret_version: number;
        organization_id: string | null;
        priority: number;
        weight: number;
        expires_at: Date | null;
        usage_limit: string | null;
        usage_unit: UsageUnit | null;
        usage_period: UsagePeriod | null;
        usage_current: string;
        reset_at: Date | null;
        cooldown_until: Date | null;
        health: string;
      }[]
    >(
      `SELECT id, provider, secret_hint, secret_ciphertext, secret_version, organization_id, priority, weight,
              expires_at, usage_limit, usage_unit, usage_period, usage_current, reset_at, cooldown_until, health
         FROM api_keys
        WHERE provider = $1 AND active AND secret_ciphertext IS NOT NULL`,
      [provider],
    );
    const now = Date.now();
    return rows.map((r) => ({
      id: r.id,
      provider: r.provider,
      hint: r.secret_hint,
      // Decrypting thousands of keys on every reload would stall the event loop; only the keys
      // requests actually pick are opened, once per load.
      sealed: { envelope: r.secret_ciphertext, version: r.secret_version },
      secret: null,
      organizationId: r.organization_id ?? undefined,
      priority: r.priority,
      weight: r.weight,
      expiresAt: r.expires_at ? r.expires_at.getTime() : null,
      limit: r.usage_limit === null ? null : Number(r.usage_limit),
      unit: r.usage_unit,
      period: r.usage_period,
      // A period that ended is counted from zero even before the reset job has run.
      counted: r.reset_at && r.reset_at.getTime() <= now ? 0 : Number(r.usage_current),
      inFlight: 0,
      cooldownUntil: r.cooldown_until ? r.cooldown_until.getTime() : 0,
      healthy: r.health === 'healthy',
      failures: 0,
      trialInFlight: false,
    }));
  }
}
