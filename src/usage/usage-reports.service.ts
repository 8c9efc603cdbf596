import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { AlertEventsService } from '../alerts/alert-events.service';
import { notFound, ValidationProblem } from '../common/problem';
import type { ApiKey, UsagePeriod, UsageUnit } from '../keys/api-key.entity';
import { KeysService } from '../keys/keys.service';
import { nextResetAt } from '../keys/usage-period';
import type { ReportGroup, UsageReportQuery } from './dto/usage-report.query';
import { tokenBudgets } from './token-budgets';
import {
  costWindow,
  daysOf,
  errorRate,
  fillSeries,
  lastDays,
  lastMonths,
  PROJECTION_FORMULA,
  projectCost,
  rangeWindow,
  reportWindow,
  roundUsd,
  sumMetrics,
  type TimeWindow,
  type UsageMetric,
  type UsageRange,
  type UsageTotals,
} from './usage-math';

/** The spec's GetKeyUsageResponse, with the unit, period and projection it is read against. */
export interface KeyUsage {
  usage: {
    current: number;
    limit: number | null;
    resetAt: Date | null;
    unit: UsageUnit | null;
    period: UsagePeriod | null;
  };
  history: { daily: UsageMetric[]; monthly: UsageMetric[] };
  costs: {
    current: number;
    projected: number;
    period: TimeWindow;
    formula: string;
    /** The "now" the projection was computed at. */
    asOf: Date;
  };
}

export type ReportRow = UsageTotals & {
  errorRate: number;
  keyId?: string;
  keyName?: string | null;
  provider?: string;
  model?: string | null;
  accessTokenId?: string | null;
  tokenName?: string | null;
  day?: string;
  /** Keyward's own refusals (no key used), reported usage, and requests without a price. */
  refusals?: number;
  reportedRequests?: number;
  unpricedRequests?: number;
};

export interface UsageReport {
  from: Date;
  /** Exclusive. */
  to: Date;
  granularity: 'day' | 'hour';
  groupBy: ReportGroup;
  filters: { provider: string | null; keyId: string | null; accessTokenId: string | null };
  rows: ReportRow[];
  totals: UsageTotals & { errorRate: number };
}

export interface KeyCost {
  keyId: string;
  keyName: string;
  provider: string;
  revoked: boolean;
  /** What the window is: the limit's period, or `month` for keys without a periodic limit. */
  period: 'daily' | 'weekly' | 'monthly' | 'month';
  window: TimeWindow;
  current: number;
  projected: number;
  /** The key's limit when it is a USD budget: what `projected` is worth comparing with. */
  budget: number | null;
}

export interface ModelCost {
  provider: string;
  model: string | null;
  current: number;
  projected: number;
}

export interface UsageOverview {
  range: UsageRange | 'custom';
  window: TimeWindow;
  byKey: UsageReport;
  byModel: UsageReport;
  byToken: UsageReport;
  byProvider: UsageReport;
  costs: { keys: KeyCost[]; models: ModelCost[]; month: TimeWindow };
  daily: UsageMetric[];
  alerts: Record<string, unknown>[] | null;
  asOf: Date;
}

interface RollupFilter {
  bucket: 'day' | 'hour';
  window: TimeWindow;
  provider?: string | null;
  keyId?: string | null;
  accessTokenId?: string | null;
}

/** Sums of a rollup group; float8 because bigint and numeric sums arrive as strings. */
const METRICS = `coalesce(sum(r.requests), 0)::float8 AS requests,
  coalesce(sum(r.total_tokens), 0)::float8 AS tokens,
  coalesce(sum(r.input_tokens), 0)::float8 AS "inputTokens",
  coalesce(sum(r.output_tokens), 0)::float8 AS "outputTokens",
  coalesce(sum(r.cost), 0)::float8 AS cost,
  coalesce(sum(r.errors), 0)::float8 AS errors,
  coalesce(sum(r.requests) FILTER (WHERE r.key_id IS NULL), 0)::float8 AS refusals,
  coalesce(sum(r.requests) FILTER (WHERE r.source = 'reported'), 0)::float8 AS "reportedRequests",
  coalesce(sum(r.unpriced_requests), 0)::float8 AS "unpricedRequests"`;

const DAY_OF = `to_char(r.period_start AT TIME ZONE 'UTC', 'YYYY-MM-DD')`;

const REPORT_GROUPS: Record<ReportGroup, { select: string; groupBy: string; orderBy: string }> = {
  key: {
    select: `r.key_id AS "keyId", k.name AS "keyName", r.provider`,
    groupBy: 'r.key_id, k.name, r.provider',
    orderBy: `cost DESC, requests DESC, "keyName", "keyId"`,
  },
  provider: { select: 'r.provider', groupBy: 'r.provider', orderBy: 'cost DESC, requests DESC, r.provider' },
  model: {
    select: `r.provider, nullif(r.model, '') AS model`,
    groupBy: 'r.provider, r.model',
    orderBy: 'cost DESC, requests DESC, r.provider, r.model',
  },
  token: {
    select: `r.access_token_id AS "accessTokenId", t.name AS "tokenName"`,
    groupBy: 'r.access_token_id, t.name',
    orderBy: `cost DESC, requests DESC, "tokenName", "accessTokenId"`,
  },
  day: {
    select: `to_char(date_trunc('day', r.period_start AT TIME ZONE 'UTC'), 'YYYY-MM-DD') AS day`,
    groupBy: '1',
    orderBy: 'day',
  },
};

/**
 * Usage reports, for the JSON API and the console alike. Every figure comes from the hourly and
 * daily rollups the recorder keeps, never from a scan of raw events: a month of traffic is a few
 * thousand rollup rows, while its events may be millions. Days and months are UTC.
 */
@Injectable()
export class UsageReportsService {
  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly keys: KeysService,
    private readonly alerts: AlertEventsService,
  ) {}

  /** The spec's GetKeyUsageResponse for one key; a 404 problem when there is no such key. */
  async keyUsage(id: string, now: Date = new Date()): Promise<KeyUsage> {
    return this.usageOf(await this.keys.get(id), now);
  }

  /** The key itself (for its name) with its usage, for the console's per-key section. */
  async keyOverview(id: string, now: Date = new Date()): Promise<{ key: ApiKey; usage: KeyUsage }> {
    const key = await this.keys.get(id);
    return { key, usage: await this.usageOf(key, now) };
  }

  private async usageOf(key: ApiKey, now: Date): Promise<KeyUsage> {
    const id = key.id;
    const limited = key.usageLimit !== null;
    const days = lastDays(now, 30);
    const months = lastMonths(now, 12);
    const window = costWindow(limited ? key.usagePeriod : null, now);
    const [daily, monthly, spent] = await Promise.all([
      this.sumBy(DAY_OF, { bucket: 'day', window: days.window, keyId: id }),
      this.sumBy(`to_char(date_trunc('month', r.period_start AT TIME ZONE 'UTC'), 'YYYY-MM')`, {
        bucket: 'day',
        window: months.window,
        keyId: id,
      }),
      this.costIn({ bucket: 'day', window, keyId: id }),
    ]);
    // A period that ended counts from zero even before the reset job or the next write restarts it.
    const expired = key.resetAt !== null && key.resetAt.getTime() <= now.getTime();
    return {
      usage: {
        current: limited && !expired ? key.usageCurrent : 0,
        limit: key.usageLimit,
        resetAt: !limited ? null : expired && key.usagePeriod ? nextResetAt(key.usagePeriod, now) : key.resetAt,
        unit: key.usageUnit,
        period: key.usagePeriod,
      },
      history: { daily: fillSeries(days.labels, daily), monthly: fillSeries(months.labels, monthly) },
      costs: {
        current: spent,
        projected: projectCost(spent, window, now),
        period: window,
        formula: PROJECTION_FORMULA,
        asOf: now,
      },
    };
  }

  /**
   * One access token's usage: this month per key and model, 30 days, and its budgets with spend
   * against each (none where the budgets table does not exist yet). 404 for an unknown token.
   */
  async tokenOverview(id: string, now: Date = new Date()) {
    const [token] = await this.dataSource.query<
      { id: string; name: string; hint: string; revokedAt: Date | null; expiresAt: Date | null }[]
    >(
      `SELECT id, name, token_hint AS hint, revoked_at AS "revokedAt", expires_at AS "expiresAt"
         FROM access_tokens WHERE id = $1`,
      [id],
    );
    if (!token) throw notFound('Access token', id);
    const month = costWindow(null, now);
    const only = { provider: null, keyId: null, accessTokenId: id };
    const [byKey, byModel, daily, budgets] = await Promise.all([
      this.reportOver(month, 'day', 'key', only),
      this.reportOver(month, 'day', 'model', only),
      this.dailySeries({ accessTokenId: id }, now),
      tokenBudgets(this.dataSource, [id]),
    ]);
    return { token, month, byKey, byModel, daily, budgets, asOf: now };
  }

  /** "Generate usage reports": totals across keys for a window, grouped one way. */
  async report(query: UsageReportQuery, now: Date = new Date()): Promise<UsageReport> {
    const resolved = reportWindow(query.from, query.to, now);
    if (!resolved.ok) throw new ValidationProblem([{ field: resolved.field, messages: [resolved.message] }]);
    return this.reportOver(resolved.window, resolved.granularity, query.groupBy ?? 'key', {
      provider: query.provider ?? null,
      keyId: query.keyId ?? null,
      accessTokenId: query.accessTokenId ?? null,
    });
  }

  /** The console's UsageMonitoring page: metrics for a range, costs, 30 days, recent alerts. */
  async overview(
    filters: { range: UsageRange | 'custom'; window?: TimeWindow; provider?: string | null; withAlerts: boolean },
    now: Date = new Date(),
  ): Promise<UsageOverview> {
    const window = filters.window ?? rangeWindow(filters.range === 'custom' ? 'month' : filters.range, now);
    const only = { provider: filters.provider ?? null, keyId: null, accessTokenId: null };
    const [byKey, byProvider, byModel, byToken, costs, daily, alerts] = await Promise.all([
      this.reportOver(window, 'day', 'key', only),
      this.reportOver(window, 'day', 'provider', only),
      this.reportOver(window, 'day', 'model', only),
      this.reportOver(window, 'day', 'token', only),
      this.costTracking(filters.provider ?? null, now),
      // The chart shows the days of the range asked for.
      this.reportOver(window, 'day', 'day', only),
      filters.withAlerts ? this.alerts.recent(10) : Promise.resolve(null),
    ]);
    return {
      range: filters.range,
      window,
      byKey,
      byProvider,
      byModel,
      byToken,
      costs,
      daily: daily.rows.map(({ day, ...m }) => ({
        period: day!,
        requests: m.requests,
        tokens: m.tokens,
        inputTokens: m.inputTokens,
        outputTokens: m.outputTokens,
        cost: m.cost,
        errors: m.errors,
      })),
      alerts,
      asOf: now,
    };
  }

  /** The last `days` UTC days of usage, every day present, oldest first. */
  async dailySeries(
    filter: { provider?: string | null; keyId?: string | null; accessTokenId?: string | null },
    now: Date = new Date(),
    days = 30,
  ): Promise<UsageMetric[]> {
    const { window, labels } = lastDays(now, days);
    return fillSeries(labels, await this.sumBy(DAY_OF, { bucket: 'day', window, ...filter }));
  }

  /**
   * Cost so far and projected per key, each over its own window (the period of its limit, or
   * this calendar month), and per model over this calendar month.
   */
  async costTracking(provider: string | null, now: Date = new Date()) {
    const keys = await this.dataSource.query<
      {
        id: string;
        name: string;
        provider: string;
        usage_limit: string | null;
        usage_unit: UsageUnit | null;
        usage_period: UsagePeriod | null;
        revoked: boolean;
      }[]
    >(
      `SELECT id, name, provider, usage_limit, usage_unit, usage_period, revoked_at IS NOT NULL AS revoked
         FROM api_keys WHERE ($1::text IS NULL OR provider = $1) ORDER BY name, id`,
      [provider],
    );
    const windows = keys.map((k) => costWindow(k.usage_limit === null ? null : k.usage_period, now));
    const spent = await this.dataSource.query<{ id: string; cost: number }[]>(
      `SELECT w.id, coalesce(sum(r.cost), 0)::float8 AS cost
         FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[]) AS w(id, start_at, end_at)
         LEFT JOIN usage_rollups r
           ON r.bucket = 'day' AND r.key_id = w.id AND r.period_start >= w.start_at AND r.period_start < w.end_at
        GROUP BY w.id`,
      [keys.map((k) => k.id), windows.map((w) => w.start), windows.map((w) => w.end)],
    );
    const costOf = new Map(spent.map((s) => [s.id, roundUsd(s.cost)]));
    const keyCosts: KeyCost[] = keys
      .map((k, i) => {
        const current = costOf.get(k.id) ?? 0;
        const periodic = k.usage_limit !== null && k.usage_period !== null && k.usage_period !== 'never';
        return {
          keyId: k.id,
          keyName: k.name,
          provider: k.provider,
          revoked: k.revoked,
          period: periodic ? (k.usage_period as KeyCost['period']) : 'month',
          window: windows[i],
          current,
          projected: projectCost(current, windows[i], now),
          budget: k.usage_unit === 'usd' && k.usage_limit !== null ? Number(k.usage_limit) : null,
        } satisfies KeyCost;
      })
      // A revoked key that spent nothing this period is history, not a cost.
      .filter((k) => !k.revoked || k.current > 0);

    const month = costWindow(null, now);
    const models = await this.dataSource.query<{ provider: string; model: string | null; cost: number }[]>(
      `SELECT r.provider, nullif(r.model, '') AS model, sum(r.cost)::float8 AS cost
         FROM usage_rollups r
        WHERE r.bucket = 'day' AND r.period_start >= $1 AND r.period_start < $2 AND ($3::text IS NULL OR r.provider = $3)
        GROUP BY r.provider, r.model
        ORDER BY cost DESC, r.provider, r.model`,
      [month.start, month.end, provider],
    );
    return {
      keys: keyCosts,
      models: models.map((m) => ({
        provider: m.provider,
        model: m.model,
        current: roundUsd(m.cost),
        projected: projectCost(roundUsd(m.cost), month, now),
      })),
      month,
    };
  }

  private async reportOver(
    window: TimeWindow,
    granularity: 'day' | 'hour',
    groupBy: ReportGroup,
    filters: { provider: string | null; keyId: string | null; accessTokenId: string | null },
  ): Promise<UsageReport> {
    const group = REPORT_GROUPS[groupBy];
    const params: unknown[] = [];
    const where = this.where({ bucket: granularity, window, ...filters }, params);
    const join =
      groupBy === 'key'
        ? 'LEFT JOIN api_keys k ON k.id = r.key_id'
        : groupBy === 'token'
          ? 'LEFT JOIN access_tokens t ON t.id = r.access_token_id'
          : '';
    const raw = await this.dataSource.query<ReportRow[]>(
      `SELECT ${group.select}, ${METRICS}
         FROM usage_rollups r ${join}
        WHERE ${where}
        GROUP BY ${group.groupBy}
        ORDER BY ${group.orderBy}`,
      params,
    );
    let rows = raw.map((r) => ({ ...r, cost: roundUsd(r.cost), errorRate: errorRate(r.errors, r.requests) }));
    if (groupBy === 'day') {
      const byDay = fillSeries(
        daysOf(window),
        rows.map(({ day, ...metrics }) => ({ period: day!, ...metrics })),
      );
      rows = byDay.map(({ period, ...metrics }) => ({
        day: period,
        ...metrics,
        errorRate: errorRate(metrics.errors, metrics.requests),
      }));
    }
    const totals = sumMetrics(rows);
    return {
      from: window.start,
      to: window.end,
      granularity,
      groupBy,
      filters,
      rows,
      totals: { ...totals, errorRate: errorRate(totals.errors, totals.requests) },
    };
  }

  private async sumBy(periodExpression: string, filter: RollupFilter): Promise<UsageMetric[]> {
    const params: unknown[] = [];
    const where = this.where(filter, params);
    const rows = await this.dataSource.query<UsageMetric[]>(
      `SELECT ${periodExpression} AS period, ${METRICS} FROM usage_rollups r WHERE ${where} GROUP BY 1`,
      params,
    );
    return rows.map((r) => ({ ...r, cost: roundUsd(r.cost) }));
  }

  private async costIn(filter: RollupFilter): Promise<number> {
    const params: unknown[] = [];
    const where = this.where(filter, params);
    const [row] = await this.dataSource.query<{ cost: number }[]>(
      `SELECT coalesce(sum(r.cost), 0)::float8 AS cost FROM usage_rollups r WHERE ${where}`,
      params,
    );
    return roundUsd(row?.cost ?? 0);
  }

  /** The WHERE clause of a rollup query; values go to `params`, never into the SQL text. */
  private where(filter: RollupFilter, params: unknown[]): string {
    params.push(filter.bucket, filter.window.start, filter.window.end);
    const clauses = ['r.bucket = $1', 'r.period_start >= $2', 'r.period_start < $3'];
    if (filter.provider) {
      params.push(filter.provider);
      clauses.push(`r.provider = $${params.length}`);
    }
    if (filter.keyId) {
      params.push(filter.keyId);
      clauses.push(`r.key_id = $${params.length}`);
    }
    if (filter.accessTokenId) {
      params.push(filter.accessTokenId);
      clauses.push(`r.access_token_id = $${params.length}`);
    }
    return clauses.join(' AND ');
  }
}
