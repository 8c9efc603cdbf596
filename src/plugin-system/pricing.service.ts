import { Injectable, Logger, OnModuleInit, Optional } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { CHANNELS, ChangeFeedService, REFRESH_AHEAD_AT } from '../database/change-feed';
import { DatabaseHealth } from '../database/database-health';
import { costOf, type CostResult, type ModelPrice, type PricingTable, type UsageCount } from './provider-plugin';
import { ProviderPrice } from './provider-price.entity';
import { ProviderRegistry } from './provider-registry';

export interface PriceRow extends ModelPrice {
  model: string;
  /** `override`: an admin set it; `plugin`: from the plugin's pricing.json. */
  source: 'plugin' | 'override';
  /** Whether the plugin lists the model (an override may price one it does not list). */
  listed: boolean;
  updatedAt?: Date;
  updatedBy?: string | null;
}

export interface PriceChange {
  model: string;
  input: number;
  output: number;
  cachedInput?: number;
}

/**
 * Prices are data: each plugin ships its table, an admin may override any model. The merged
 * table is cached per provider, because the gateway prices every call; a change reaches every
 * instance through the change feed (`keyward_prices`). When the overrides cannot be read (an
 * outage), the last table that loaded keeps pricing calls; with none yet, the plugin's own prices.
 */
@Injectable()
export class PricingService implements OnModuleInit {
  private readonly logger = new Logger('Pricing');
  private readonly cache = new Map<string, { table: PricingTable; loadedAt: number }>();
  private readonly loading = new Map<string, Promise<PricingTable>>();
  /** Bumped by every invalidation: a load that began before one does not cache what it read. */
  private generation = 0;
  /** Providers whose overrides could not be read at all yet (said once each). */
  private readonly warned = new Set<string>();
  private static readonly TTL_MS = 60_000;
  /** While the overrides cannot be read, a reload is tried at most this often. */
  private static readonly STALE_RETRY_MS = 1_000;

  constructor(
    private readonly registry: ProviderRegistry,
    @InjectDataSource() private readonly dataSource: DataSource,
    @Optional() private readonly feed?: ChangeFeedService,
    @Optional() private readonly health?: DatabaseHealth,
  ) {}

  onModuleInit(): void {
    this.feed?.subscribe(CHANNELS.prices, (provider) => this.invalidate(provider));
    this.feed?.onReconnect(() => this.invalidate(null));
  }

  async rows(providerId: string): Promise<PriceRow[]> {
    const plugin = this.registry.require(providerId);
    const overrides = await this.overrides(providerId);
    const models = new Set([...plugin.config.models, ...Object.keys(plugin.pricing), ...overrides.map((o) => o.model)]);
    return [...models].sort().map((model): PriceRow => {
      const override = overrides.find((o) => o.model === model);
      const listed = plugin.config.models.includes(model) || Object.hasOwn(plugin.pricing, model);
      if (override) {
        return {
          model,
          input: override.input,
          output: override.output,
          ...(override.cachedInput !== null ? { cachedInput: override.cachedInput } : {}),
          source: 'override',
          listed,
          updatedAt: override.updatedAt,
          updatedBy: override.updatedBy,
        };
      }
      const price = plugin.pricing[model];
      return {
        model,
        input: price?.input ?? 0,
        output: price?.output ?? 0,
        ...(price?.cachedInput !== undefined ? { cachedInput: price.cachedInput } : {}),
        source: 'plugin',
        listed,
      };
    });
  }

  /** The provider's table when a fresh one is cached: the gateway prices a call without a promise. */
  freshTable(providerId: string): PricingTable | undefined {
    const cached = this.cache.get(providerId);
    const ttl = this.feed ? this.feed.ttl(PricingService.TTL_MS) : PricingService.TTL_MS;
    const age = cached ? Date.now() - cached.loadedAt : Infinity;
    if (age >= ttl) return undefined;
    // Reloaded in the background in the last quarter of its life: no call waits when it runs out.
    if (age >= ttl * REFRESH_AHEAD_AT && !this.loading.has(providerId) && this.health?.up !== false)
      void this.table(providerId, true).catch(() => undefined);
    return cached!.table;
  }

  /** The provider's prices with the admins' overrides; concurrent reloads share one query. */
  table(providerId: string, ahead = false): Promise<PricingTable> {
    const fresh = ahead ? undefined : this.freshTable(providerId);
    if (fresh) return Promise.resolve(fresh);
    let loading = this.loading.get(providerId);
    if (!loading) {
      const load: Promise<PricingTable> = this.load(providerId).finally(() => {
        if (this.loading.get(providerId) === load) this.loading.delete(providerId);
      });
      this.loading.set(providerId, load);
      loading = load;
    }
    return loading;
  }

  private invalidate(providerId: string | null | undefined): void {
    this.generation++;
    if (providerId) {
      this.cache.delete(providerId);
      this.loading.delete(providerId);
    } else {
      this.cache.clear();
      this.loading.clear();
    }
  }

  private async load(providerId: string): Promise<PricingTable> {
    const generation = this.generation;
    const cached = this.cache.get(providerId);
    const ttl = this.feed ? this.feed.ttl(PricingService.TTL_MS) : PricingService.TTL_MS;
    const plugin = this.registry.require(providerId);
    const table: PricingTable = { ...plugin.pricing };
    let overrides: ProviderPrice[];
    try {
      if (this.health && !this.health.up) throw this.health.unavailable();
      overrides = await (this.health ? this.health.guard(this.overrides(providerId)) : this.overrides(providerId));
    } catch (error) {
      this.health?.reportFailure(error);
      const fallback = cached?.table ?? table;
      if (!cached && !this.warned.has(providerId)) {
        this.warned.add(providerId);
        this.logger.warn(`Price overrides of ${providerId} unreadable; pricing with the plugin's prices`);
      }
      this.cache.set(providerId, {
        table: fallback,
        loadedAt: Date.now() - ttl + PricingService.STALE_RETRY_MS,
      });
      return fallback;
    }
    for (const o of overrides) {
      table[o.model] = {
        input: o.input,
        output: o.output,
        ...(o.cachedInput !== null ? { cachedInput: o.cachedInput } : {}),
      };
    }
    if (generation === this.generation) this.cache.set(providerId, { table, loadedAt: Date.now() });
    return table;
  }

  /** USD for a call; an unknown model costs 0 and is flagged `unpriced`, never guessed. */
  async cost(providerId: string, model: string, usage: UsageCount): Promise<CostResult> {
    return costOf(usage, await this.table(providerId), model);
  }

  async set(providerId: string, changes: PriceChange[], actorEmail: string | null): Promise<void> {
    this.registry.require(providerId);
    await this.dataSource.getRepository(ProviderPrice).upsert(
      changes.map((c) => ({
        providerId,
        model: c.model,
        input: c.input,
        output: c.output,
        cachedInput: c.cachedInput ?? null,
        updatedBy: actorEmail,
      })),
      ['providerId', 'model'],
    );
    this.invalidate(providerId);
    await this.feed?.notify(CHANNELS.prices, providerId).catch(() => undefined);
  }

  /** Back to the plugin's price; false when there was no override. */
  async reset(providerId: string, model: string): Promise<boolean> {
    this.registry.require(providerId);
    const { affected } = await this.dataSource.getRepository(ProviderPrice).delete({ providerId, model });
    this.invalidate(providerId);
    await this.feed?.notify(CHANNELS.prices, providerId).catch(() => undefined);
    return (affected ?? 0) > 0;
  }

  private overrides(providerId: string): Promise<ProviderPrice[]> {
    return this.dataSource.getRepository(ProviderPrice).find({ where: { providerId }, order: { model: 'ASC' } });
  }
}
