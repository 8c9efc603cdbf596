import { stringify } from 'csv-stringify/sync';
import { addDays, dayLabel, errorRate, roundUsd, startOfUtcMonth, type TimeWindow } from '../usage/usage-math';

/** Pure parts of a usage report: its periods, rows, changes and CSV. Days and months are UTC. */

export const REPORT_KINDS = ['daily', 'monthly', 'custom'] as const;
export type ReportKind = (typeof REPORT_KINDS)[number];

/** What every report row counts, from the rollups. */
export interface ReportMetrics {
  requests: number;
  inputTokens: number;
  outputTokens: number;
  tokens: number;
  errors: number;
  cost: number;
  /** Of the above, what applications reported themselves (`POST /api/usage`), not the gateway. */
  reportedRequests: number;
  reportedCost: number;
  /** Keyward's own refusals: records with no key (no usable key, a usage limit, a rate limit). */
  refusals: number;
  /** Requests of a model without a price: their cost 0 means unknown, not free. */
  unpricedRequests: number;
}

export const REPORT_DIMENSIONS = ['provider', 'key', 'model', 'token'] as const;
export type ReportDimension = (typeof REPORT_DIMENSIONS)[number];

export interface ReportRow extends ReportMetrics {
  /** Stable id of the group within its dimension: provider id, key id, `provider/model`, token id. */
  id: string;
  /** What people read: a key's or token's name, a model name. */
  label: string;
  provider: string | null;
  errorRate: number;
  previous: { requests: number; cost: number } | null;
  /** Relative change against the previous period (0.25 = +25 %); null where there was nothing before. */
  change: { requests: number | null; cost: number | null };
}

export interface ReportErrorRow {
  errorType: string;
  /** True for Keyward's own answers (no key was used), false for errors of a provider call. */
  keyless: boolean;
  requests: number;
}

export interface ReportDay extends ReportMetrics {
  period: string;
}

export interface ReportTotals extends ReportMetrics {
  errorRate: number;
}

/** What a stored report holds (`usage_reports.data`). */
export interface ReportData {
  period: TimeWindow;
  previousPeriod: TimeWindow;
  totals: ReportTotals;
  previousTotals: ReportTotals;
  change: { requests: number | null; cost: number | null; tokens: number | null; errorRate: number | null };
  byProvider: ReportRow[];
  byKey: ReportRow[];
  byModel: ReportRow[];
  byToken: ReportRow[];
  errors: ReportErrorRow[];
  daily: ReportDay[];
  topSpenders: { keys: ReportRow[]; tokens: ReportRow[]; models: ReportRow[] };
}

export const TOP_SPENDERS = 5;

export const emptyMetrics = (): ReportMetrics => ({
  requests: 0,
  inputTokens: 0,
  outputTokens: 0,
  tokens: 0,
  errors: 0,
  cost: 0,
  reportedRequests: 0,
  reportedCost: 0,
  refusals: 0,
  unpricedRequests: 0,
});

export function addMetrics(rows: ReportMetrics[]): ReportMetrics {
  const total = emptyMetrics();
  for (const r of rows) {
    for (const k of Object.keys(total) as (keyof ReportMetrics)[]) total[k] += r[k];
  }
  total.cost = roundUsd(total.cost);
  total.reportedCost = roundUsd(total.reportedCost);
  return total;
}

export const withRate = <T extends ReportMetrics>(m: T): T & { errorRate: number } => ({
  ...m,
  errorRate: errorRate(m.errors, m.requests),
});

/** (now − before) ÷ before; null when there was nothing before to compare with. */
export function relativeChange(now: number, before: number): number | null {
  if (!(before > 0)) return null;
  return Math.round(((now - before) / before) * 10_000) / 10_000;
}

/** The UTC day `day` belongs to. */
export function dailyPeriod(day: Date): TimeWindow {
  const start = new Date(Date.UTC(day.getUTCFullYear(), day.getUTCMonth(), day.getUTCDate()));
  return { start, end: addDays(start, 1) };
}

/** The UTC calendar month `day` belongs to. */
export function monthlyPeriod(day: Date): TimeWindow {
  return { start: startOfUtcMonth(day), end: startOfUtcMonth(day, 1) };
}

/** What kind a window is: one whole UTC day, one calendar month, or anything else. */
export function kindOf(window: TimeWindow): ReportKind {
  const day = dailyPeriod(window.start);
  if (day.start.getTime() === window.start.getTime() && day.end.getTime() === window.end.getTime()) return 'daily';
  const month = monthlyPeriod(window.start);
  if (month.start.getTime() === window.start.getTime() && month.end.getTime() === window.end.getTime()) {
    return 'monthly';
  }
  return 'custom';
}

/** The period a report compares with: the day or month before, else as long, just before. */
export function previousPeriod(window: TimeWindow): TimeWindow {
  switch (kindOf(window)) {
    case 'daily':
      return dailyPeriod(addDays(window.start, -1));
    case 'monthly':
      return monthlyPeriod(addDays(window.start, -1));
    default: {
      const length = window.end.getTime() - window.start.getTime();
      return { start: new Date(window.start.getTime() - length), end: window.start };
    }
  }
}

/** Rows of this period with the previous period's figures and the change between them. */
export function compareRows(
  current: (ReportMetrics & { id: string; label: string; provider: string | null })[],
  before: (ReportMetrics & { id: string })[],
): ReportRow[] {
  const previous = new Map(before.map((r) => [r.id, r]));
  return current.map((r) => {
    const p = previous.get(r.id);
    return {
      ...withRate(r),
      previous: p ? { requests: p.requests, cost: p.cost } : null,
      change: { requests: relativeChange(r.requests, p?.requests ?? 0), cost: relativeChange(r.cost, p?.cost ?? 0) },
    };
  });
}

/** The top `count` rows by cost, ignoring groups that cost nothing. */
export const topByCost = (rows: ReportRow[], count = TOP_SPENDERS) =>
  [...rows]
    .filter((r) => r.cost > 0)
    .sort((a, b) => b.cost - a.cost || b.requests - a.requests)
    .slice(0, count);

const SECTION_LABELS: Record<ReportDimension, string> = {
  provider: 'provider',
  key: 'key',
  model: 'model',
  token: 'access_token',
};

const CSV_COLUMNS = [
  'section',
  'id',
  'name',
  'provider',
  'requests',
  'input_tokens',
  'output_tokens',
  'total_tokens',
  'errors',
  'error_rate',
  'cost_usd',
  'reported_requests',
  'reported_cost_usd',
  'refusals',
  'unpriced_requests',
  'previous_requests',
  'previous_cost_usd',
  'cost_change',
] as const;

const usd = (n: number) => n.toFixed(8).replace(/0+$/, '').replace(/\.$/, '');
const rate = (n: number | null) => (n === null ? '' : n.toFixed(4));

/**
 * A report as CSV, one line per group: a `total` line, then per provider, key, model, access
 * token and day, then one per error type. Costs in USD with up to 8 decimals, as stored.
 */
export function reportCsv(data: ReportData): string {
  const line = (
    section: string,
    m: ReportMetrics,
    extra: { id?: string; name?: string; provider?: string | null; row?: ReportRow },
  ) => [
    section,
    extra.id ?? '',
    extra.name ?? '',
    extra.provider ?? '',
    m.requests,
    m.inputTokens,
    m.outputTokens,
    m.tokens,
    m.errors,
    rate(errorRate(m.errors, m.requests)),
    usd(m.cost),
    m.reportedRequests,
    usd(m.reportedCost),
    m.refusals,
    m.unpricedRequests,
    extra.row?.previous?.requests ?? '',
    extra.row?.previous ? usd(extra.row.previous.cost) : '',
    extra.row ? rate(extra.row.change.cost) : '',
  ];
  const records: (string | number)[][] = [
    line('total', data.totals, {
      // Stored reports come back from JSON, with their dates as strings.
      name: `${dayLabel(new Date(data.period.start))}..${dayLabel(addDays(new Date(data.period.end), -1))}`,
    }),
  ];
  const sections: [ReportDimension, ReportRow[]][] = [
    ['provider', data.byProvider],
    ['key', data.byKey],
    ['model', data.byModel],
    ['token', data.byToken],
  ];
  for (const [dimension, rows] of sections) {
    for (const row of rows) {
      records.push(line(SECTION_LABELS[dimension], row, { id: row.id, name: row.label, provider: row.provider, row }));
    }
  }
  for (const day of data.daily) records.push(line('day', day, { id: day.period, name: day.period }));
  for (const e of data.errors) {
    const m = { ...emptyMetrics(), requests: e.requests, errors: e.requests, refusals: e.keyless ? e.requests : 0 };
    records.push(line('error_type', m, { id: e.errorType, name: e.keyless ? 'refused by Keyward' : 'provider call' }));
  }
  return stringify(records, { header: true, columns: [...CSV_COLUMNS] });
}
