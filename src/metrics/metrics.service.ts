import { Injectable, Logger } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { DataSource } from 'typeorm';
import { ProviderRegistry } from '../plugin-system/provider-registry';
import { UsageRecorder } from '../usage/usage-recorder';

export type LimitScope = 'key' | 'token' | 'rate';

/** Key health states as the gauge reports them (a healthy key in its cooldown is `cooling_down`). */
export const KEY_STATES = ['healthy', 'cooling_down', 'unhealthy'] as const;

// Gateway latency spans loopback fakes (milliseconds) to long streamed completions (minutes).
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

/** A scrape must answer even when the database hangs. */
function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

type Child<T> = Map<string, Map<string, T>>;

/** The child for (a, b), made once: the hot path then does two map lookups and no allocation. */
function child<T>(cache: Child<T>, a: string, b: string, make: () => T): T {
  let inner = cache.get(a);
  if (!inner) cache.set(a, (inner = new Map()));
  let found = inner.get(b);
  if (!found) inner.set(b, (found = make()));
  return found;
}

/**
 * Prometheus metrics (`GET /metrics`). Counters and the histogram are fed by the gateway as
 * calls end; the gauges are read when Prometheus scrapes: key health from the database, the usage
 * queue from this instance's recorder. Each application has its own registry, so several apps in
 * one process (the tests) never share or collide.
 */
@Injectable()
export class MetricsService {
  private readonly logger = new Logger('Metrics');
  readonly registry = new Registry();
  private readonly duration: Histogram<'provider' | 'outcome'>;
  private readonly requests: Counter<'provider' | 'outcome'>;
  private readonly failovers: Counter<'provider'>;
  private readonly limitsHit: Counter<'scope'>;
  private readonly requestChildren: Child<{ observe(v: number): void; inc(): void }> = new Map();
  private readonly failoverChildren = new Map<string, { inc(): void }>();
  private readonly limitChildren = new Map<string, { inc(): void }>();
  private healthQueryFailed = false;

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly recorder: UsageRecorder,
    private readonly providers: ProviderRegistry,
  ) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.duration = new Histogram({
      name: 'keyward_gateway_request_duration_seconds',
      help: 'Gateway calls from request to the end of the response, by provider and outcome',
      labelNames: ['provider', 'outcome'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.requests = new Counter({
      name: 'keyward_gateway_requests_total',
      help: 'Gateway calls by provider and outcome',
      labelNames: ['provider', 'outcome'],
      registers,
    });
    this.failovers = new Counter({
      name: 'keyward_gateway_failovers_total',
      help: 'Times a gateway call moved on to another key of the provider',
      labelNames: ['provider'],
      registers,
    });
    this.limitsHit = new Counter({
      name: 'keyward_limits_hit_total',
      help: "Calls refused by a limit: a key's usage limit (key), an access token's limit (token), a per-minute rate limit (rate)",
      labelNames: ['scope'],
      registers,
    });
    // Every scope shows from the first scrape, at 0, so rate() works before the first hit.
    for (const scope of ['key', 'token', 'rate'] as const) this.limitsHit.labels(scope).inc(0);

    const keyHealth = (): Promise<void> => this.collectKeyHealth(health);
    const health = new Gauge({
      name: 'keyward_key_health',
      help: 'Active provider keys by health state (read from the database at scrape time)',
      labelNames: ['provider', 'state'],
      registers,
      collect: keyHealth,
    });
    const usage = this.recorder;
    new Gauge({
      name: 'keyward_usage_queue_depth',
      help: 'Usage records accepted by this instance and not yet written to the database',
      registers,
      collect() {
        this.set(usage.queued);
      },
    });
    new Gauge({
      name: 'keyward_usage_write_lag_seconds',
      help: 'Age of the oldest usage record waiting to be written (0 when none waits)',
      registers,
      collect() {
        const oldest = usage.oldestQueuedAt;
        this.set(oldest ? Math.max(0, (Date.now() - oldest.getTime()) / 1000) : 0);
      },
    });
  }

  /** One finished gateway call (`outcome`: success, upstream_error, no_key, limited, …). */
  observeGatewayRequest(provider: string, outcome: string, seconds: number): void {
    const c = child(this.requestChildren, provider, outcome, () => {
      const histogram = this.duration.labels(provider, outcome);
      const counter = this.requests.labels(provider, outcome);
      return { observe: (v: number) => histogram.observe(v), inc: () => counter.inc() };
    });
    c.observe(seconds);
    c.inc();
  }

  countFailover(provider: string): void {
    let c = this.failoverChildren.get(provider);
    if (!c) this.failoverChildren.set(provider, (c = this.failovers.labels(provider)));
    c.inc();
  }

  countLimitHit(scope: LimitScope): void {
    let c = this.limitChildren.get(scope);
    if (!c) this.limitChildren.set(scope, (c = this.limitsHit.labels(scope)));
    c.inc();
  }

  /** The exposition text and its content type. */
  async scrape(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  private async collectKeyHealth(gauge: Gauge<'provider' | 'state'>): Promise<void> {
    let rows: { provider: string; state: string; count: string }[];
    try {
      rows = await withTimeout(
        this.dataSource.query(
          `SELECT provider,
                CASE WHEN health = 'unhealthy' THEN 'unhealthy'
                     WHEN cooldown_until > now() THEN 'cooling_down' ELSE 'healthy' END AS state,
                count(*) AS count
           FROM api_keys WHERE active GROUP BY 1, 2`,
        ),
        1000,
      );
      if (this.healthQueryFailed) this.logger.log('Key health is readable again');
      this.healthQueryFailed = false;
    } catch (error) {
      // Left out of this scrape rather than reported as zero; logged once per outage.
      if (!this.healthQueryFailed) this.logger.warn(`Key health not readable: ${(error as Error).message}`);
      this.healthQueryFailed = true;
      gauge.reset();
      return;
    }
    gauge.reset();
    for (const provider of new Set([...this.providers.ids(), ...rows.map((r) => r.provider)])) {
      for (const state of KEY_STATES) gauge.set({ provider, state }, 0);
    }
    for (const r of rows) gauge.set({ provider: r.provider, state: r.state }, Number(r.count));
  }
}
