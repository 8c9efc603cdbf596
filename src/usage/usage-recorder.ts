import { Inject, Injectable, Logger, OnApplicationShutdown } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, EntityManager } from 'typeorm';
import { AlertEventsService } from '../alerts/alert-events.service';
import { KEYWARD_CONFIG } from '../config/config.constants';
import type { KeywardConfig } from '../config/config';

/** The spec's APIKeyUsage, with what the gateway knows besides. */
export interface UsageRecord {
  timestamp: Date;
  keyId: string | null;
  provider: string;
  accessTokenId: string | null;
  endpoint: string;
  model: string | null;
  inputTokens: number;
  outputTokens: number;
  cachedInputTokens: number;
  totalTokens: number;
  cost: number;
  /** The model had no price: cost 0 is "unknown", not "free". */
  unpriced: boolean;
  latencyMs: number;
  success: boolean;
  errorType: string | null;
  status: number | null;
  attempt: number;
  stream: boolean;
  source: 'gateway' | 'reported';
}

/** What a key's limit counts, per unit, for records not yet written. */
export interface PendingUsage {
  tokens: number;
  requests: number;
  usd: number;
}

/** The end of the current period of a key's limit, in SQL (UTC; ISO weeks start on Monday). */
export const NEXT_RESET_SQL = `CASE k.usage_period
  WHEN 'daily' THEN (date_trunc('day', now() AT TIME ZONE 'UTC') + interval '1 day') AT TIME ZONE 'UTC'
  WHEN 'weekly' THEN (date_trunc('week', now() AT TIME ZONE 'UTC') + interval '1 week') AT TIME ZONE 'UTC'
  WHEN 'monthly' THEN (date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC'
  ELSE NULL END`;

const MAX_BATCH = 1000;
const hourOf = (d: Date) => new Date(Math.floor(d.getTime() / 3_600_000) * 3_600_000);
const dayOf = (d: Date) => new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));

/** A record counts as a request against a limit when the provider did the work. */
export const countsAsRequest = (r: Pick<UsageRecord, 'success'>) => (r.success ? 1 : 0);

/**
 * Writes usage off the request path: the gateway hands each record over synchronously and goes
 * on; every `usageFlushMs` (or at 1,000 waiting) one transaction inserts the events, adds them to
 * the hourly and daily rollups and to each key's limit counter. A failed batch stays queued, in
 * order, and is retried with growing pauses: nothing is lost, and since a batch commits whole or
 * not at all, nothing is counted twice.
 */
@Injectable()
export class UsageRecorder implements OnApplicationShutdown {
  private readonly logger = new Logger('Usage');
  private queue: UsageRecord[] = [];
  private readonly pending = new Map<string, PendingUsage>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private failures = 0;
  private stopped = false;
  private readonly flushedListeners: ((written: Map<string, PendingUsage>) => void)[] = [];

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly alerts: AlertEventsService,
    @Inject(KEYWARD_CONFIG) private readonly config: KeywardConfig,
  ) {}

  record(record: UsageRecord): void {
    this.queue.push(record);
    if (record.keyId) {
      const p = this.pending.get(record.keyId) ?? { tokens: 0, requests: 0, usd: 0 };
      p.tokens += record.totalTokens;
      p.requests += countsAsRequest(record);
      p.usd += record.cost;
      this.pending.set(record.keyId, p);
    }
    if (this.queue.length >= MAX_BATCH) void this.flush();
    else this.schedule(this.config.usageFlushMs);
  }

  /** Called after each committed batch with what it added to each key's counter. */
  onFlushed(listener: (written: Map<string, PendingUsage>) => void): void {
    this.flushedListeners.push(listener);
  }

  /** Usage of a key recorded on this instance but not yet in its row. */
  pendingFor(keyId: string): PendingUsage {
    return this.pending.get(keyId) ?? { tokens: 0, requests: 0, usd: 0 };
  }

  get queued(): number {
    return this.queue.length;
  }

  /** When the oldest record still waiting was made (for the write-lag metric). */
  get oldestQueuedAt(): Date | undefined {
    return this.queue[0]?.timestamp;
  }

  /** Writes everything queued now; resolves when it is written (or has failed and is re-queued). */
  async flush(): Promise<void> {
    while (this.flushing) await this.flushing;
    if (this.queue.length === 0) return;
    this.flushing = this.writeQueued().finally(() => (this.flushing = undefined));
    return this.flushing;
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    for (let i = 0; i < 3 && this.queue.length > 0; i++) await this.flush();
    if (this.queue.length > 0)
      this.logger.error(`${this.queue.length} usage record(s) could not be written at shutdown`);
  }

  private schedule(delayMs: number): void {
    if (this.timer || this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, delayMs);
    this.timer.unref();
  }

  private async writeQueued(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.slice(0, MAX_BATCH);
      try {
        await this.dataSource.transaction((manager) => this.write(manager, batch));
      } catch (error) {
        this.failures++;
        const retryMs = Math.min(10_000, 200 * 2 ** Math.min(this.failures, 6));
        this.logger.error(
          `Writing ${batch.length} usage record(s) failed (attempt ${this.failures}); retrying in ${retryMs} ms: ${(error as Error).message}`,
        );
        await this.alerts.raise({
          kind: 'usage.write-failed',
          severity: 'critical',
          message: `Usage records could not be written (${this.queue.length} waiting); retrying.`,
          details: { reason: (error as Error).message.slice(0, 200), attempt: this.failures },
        });
        this.schedule(retryMs);
        return;
      }
      this.failures = 0;
      this.queue.splice(0, batch.length);
      const written = new Map<string, PendingUsage>();
      for (const r of batch) {
        if (!r.keyId) continue;
        const w = written.get(r.keyId) ?? { tokens: 0, requests: 0, usd: 0 };
        w.tokens += r.totalTokens;
        w.requests += countsAsRequest(r);
        w.usd += r.cost;
        written.set(r.keyId, w);
        const p = this.pending.get(r.keyId);
        if (!p) continue;
        p.tokens -= r.totalTokens;
        p.requests -= countsAsRequest(r);
        p.usd -= r.cost;
        if (p.requests <= 0 && p.tokens <= 0 && p.usd <= 1e-12) this.pending.delete(r.keyId);
      }
      // Synchronously with the pending decrement above, so no usage is ever counted in neither.
      for (const listener of this.flushedListeners) listener(written);
    }
  }

  private async write(manager: EntityManager, batch: UsageRecord[]): Promise<void> {
    const col = <K extends keyof UsageRecord>(k: K) => batch.map((r) => r[k]);
    await manager.query(
      `INSERT INTO usage_events ("timestamp", key_id, provider, access_token_id, endpoint, model, input_tokens,
         output_tokens, cached_input_tokens, total_tokens, cost, unpriced, latency_ms, success, error_type, status,
         attempt, stream, source)
       SELECT * FROM unnest($1::timestamptz[], $2::uuid[], $3::text[], $4::uuid[], $5::text[], $6::text[],
         $7::int[], $8::int[], $9::int[], $10::int[], $11::numeric[], $12::bool[], $13::int[], $14::bool[],
         $15::text[], $16::int[], $17::int[], $18::bool[], $19::text[])`,
      [
        col('timestamp'),
        col('keyId'),
        col('provider'),
        col('accessTokenId'),
        col('endpoint'),
        col('model'),
        col('inputTokens'),
        col('outputTokens'),
        col('cachedInputTokens'),
        col('totalTokens'),
        col('cost'),
        col('unpriced'),
        col('latencyMs'),
        col('success'),
        col('errorType'),
        col('status'),
        col('attempt'),
        col('stream'),
        col('source'),
      ],
    );

    const perKey = new Map<string, PendingUsage & { lastUsed: Date }>();
    const rollups = new Map<
      string,
      { bucket: string; start: Date; keyId: string; provider: string; model: string; rows: UsageRecord[] }
    >();
    for (const r of batch) {
      if (!r.keyId) continue;
      const k = perKey.get(r.keyId) ?? { tokens: 0, requests: 0, usd: 0, lastUsed: r.timestamp };
      k.tokens += r.totalTokens;
      k.requests += countsAsRequest(r);
      k.usd += r.cost;
      if (r.timestamp > k.lastUsed) k.lastUsed = r.timestamp;
      perKey.set(r.keyId, k);
      for (const [bucket, start] of [
        ['hour', hourOf(r.timestamp)],
        ['day', dayOf(r.timestamp)],
      ] as const) {
        const id = `${bucket}|${r.keyId}|${r.model ?? ''}|${start.getTime()}`;
        const group = rollups.get(id) ?? {
          bucket,
          start,
          keyId: r.keyId,
          provider: r.provider,
          model: r.model ?? '',
          rows: [],
        };
        group.rows.push(r);
        rollups.set(id, group);
      }
    }
    if (perKey.size === 0) return;

    const keys = [...perKey.entries()];
    // The counter starts over first when its period ended since the last reset, so usage in a
    // new period is never wiped by a reset that runs late.
    await manager.query(
      `UPDATE api_keys k SET
         usage_current = CASE WHEN k.reset_at IS NOT NULL AND k.reset_at <= now() THEN 0 ELSE k.usage_current END
           + CASE k.usage_unit WHEN 'tokens' THEN d.tokens WHEN 'requests' THEN d.requests WHEN 'usd' THEN d.usd ELSE 0 END,
         reset_at = CASE WHEN k.reset_at IS NOT NULL AND k.reset_at <= now() THEN ${NEXT_RESET_SQL} ELSE k.reset_at END,
         last_used_at = GREATEST(k.last_used_at, d.last_used)
       FROM unnest($1::uuid[], $2::numeric[], $3::numeric[], $4::numeric[], $5::timestamptz[])
         AS d(id, tokens, requests, usd, last_used)
       WHERE k.id = d.id`,
      [
        keys.map(([id]) => id),
        keys.map(([, k]) => k.tokens),
        keys.map(([, k]) => k.requests),
        keys.map(([, k]) => k.usd),
        keys.map(([, k]) => k.lastUsed),
      ],
    );

    const groups = [...rollups.values()];
    const sum = (rows: UsageRecord[], f: (r: UsageRecord) => number) => rows.reduce((a, r) => a + f(r), 0);
    await manager.query(
      `INSERT INTO usage_rollups AS u (bucket, period_start, key_id, provider, model, requests, errors, input_tokens,
         output_tokens, total_tokens, cost, latency_ms_sum)
       SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::uuid[], $4::text[], $5::text[], $6::bigint[],
         $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::numeric[], $12::bigint[])
       ON CONFLICT (bucket, key_id, model, period_start) DO UPDATE SET
         requests = u.requests + EXCLUDED.requests,
         errors = u.errors + EXCLUDED.errors,
         input_tokens = u.input_tokens + EXCLUDED.input_tokens,
         output_tokens = u.output_tokens + EXCLUDED.output_tokens,
         total_tokens = u.total_tokens + EXCLUDED.total_tokens,
         cost = u.cost + EXCLUDED.cost,
         latency_ms_sum = u.latency_ms_sum + EXCLUDED.latency_ms_sum`,
      [
        groups.map((g) => g.bucket),
        groups.map((g) => g.start),
        groups.map((g) => g.keyId),
        groups.map((g) => g.provider),
        groups.map((g) => g.model),
        groups.map((g) => g.rows.length),
        groups.map((g) => sum(g.rows, (r) => (r.success ? 0 : 1))),
        groups.map((g) => sum(g.rows, (r) => r.inputTokens)),
        groups.map((g) => sum(g.rows, (r) => r.outputTokens)),
        groups.map((g) => sum(g.rows, (r) => r.totalTokens)),
        groups.map((g) => sum(g.rows, (r) => r.cost)),
        groups.map((g) => sum(g.rows, (r) => r.latencyMs)),
      ],
    );
  }
}
