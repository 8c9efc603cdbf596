import { Injectable, Logger } from '@nestjs/common';
import { EventEmitter2 } from '@nestjs/event-emitter';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { notFound, ValidationProblem } from '../common/problem';
import { escapeXml } from '../usage/chart';
import {
  addDays,
  dayLabel,
  daysOf,
  formatCount,
  formatPercent,
  formatUsd,
  MAX_REPORT_DAYS,
  DAY_MS,
  parseBound,
  roundUsd,
  type TimeWindow,
} from '../usage/usage-math';
import {
  compareRows,
  emptyMetrics,
  kindOf,
  previousPeriod,
  relativeChange,
  reportCsv,
  topByCost,
  withRate,
  type ReportData,
  type ReportDay,
  type ReportDimension,
  type ReportErrorRow,
  type ReportKind,
  type ReportMetrics,
} from './report-data';
import { ROLLUP_DIMENSIONS, ROLLUP_METRICS } from './report-sql';

/** The event the alert channels deliver a report on (email with the HTML summary and the CSV). */
export const REPORT_GENERATED = 'report.generated';

export interface ReportGeneratedEvent {
  id: string;
  kind: 'daily' | 'monthly';
  periodStart: Date;
  periodEnd: Date;
  summaryHtml: string;
  csv: string;
}

export interface StoredReport {
  id: string;
  kind: ReportKind;
  periodStart: Date;
  periodEnd: Date;
  generatedBy: string;
  generatedAt: Date;
  data: ReportData;
}

export type ReportSummary = Omit<StoredReport, 'data'> & { totals: ReportData['totals'] };

type GroupRow = ReportMetrics & { id: string; label: string; provider: string | null };

const round = (m: ReportMetrics): ReportMetrics => ({
  ...m,
  cost: roundUsd(m.cost),
  reportedCost: roundUsd(m.reportedCost),
});

/**
 * Usage reports: per provider, key, model and access token, built from the daily rollups (never
 * from the raw events), compared with the period before, stored in `usage_reports`. Scheduled
 * daily and monthly reports are made once per period (a unique index decides between instances)
 * and announced as `report.generated` for delivery.
 */
@Injectable()
export class ReportsService {
  private readonly logger = new Logger('Reports');

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly events: EventEmitter2,
  ) {}

  /** A report's figures for a window of whole UTC days, read from the daily rollups. */
  async build(period: TimeWindow): Promise<ReportData> {
    const before = previousPeriod(period);
    const dimensions: ReportDimension[] = ['provider', 'key', 'model', 'token'];
    const [current, previous, totalsNow, totalsBefore, errors, days] = await Promise.all([
      Promise.all(dimensions.map((d) => this.groups(period, d))),
      Promise.all(dimensions.map((d) => this.groups(before, d))),
      this.totals(period),
      this.totals(before),
      this.errorTypes(period),
      this.days(period),
    ]);
    const [byProvider, byKey, byModel, byToken] = dimensions.map((_, i) => compareRows(current[i], previous[i]));
    const totals = withRate(totalsNow);
    const previousTotals = withRate(totalsBefore);
    return {
      period,
      previousPeriod: before,
      totals,
      previousTotals,
      change: {
        requests: relativeChange(totals.requests, previousTotals.requests),
        cost: relativeChange(totals.cost, previousTotals.cost),
        tokens: relativeChange(totals.tokens, previousTotals.tokens),
        errorRate: relativeChange(totals.errorRate, previousTotals.errorRate),
      },
      byProvider,
      byKey,
      byModel,
      byToken,
      errors,
      daily: days,
      topSpenders: {
        // Keyward's refusals cost nothing and are no one's spend.
        keys: topByCost(byKey.filter((r) => !r.id.startsWith('none:'))),
        tokens: topByCost(byToken),
        models: topByCost(byModel),
      },
    };
  }

  /** An on-demand report over `from`..`to` (dates; `to` included), stored and returned. */
  async generateFor(from: string, to: string, by: string): Promise<StoredReport> {
    const start = parseBound(from, 'start');
    const end = parseBound(to, 'end');
    const errors = [];
    if (!start || start.getTime() % DAY_MS !== 0)
      errors.push({ field: 'from', messages: ['from must be a date such as 2026-01-31'] });
    if (!end || end.getTime() % DAY_MS !== 0)
      errors.push({ field: 'to', messages: ['to must be a date such as 2026-01-31'] });
    if (errors.length === 0 && start!.getTime() >= end!.getTime()) {
      errors.push({ field: 'to', messages: ['to must be on or after from'] });
    }
    if (errors.length === 0 && end!.getTime() - start!.getTime() > MAX_REPORT_DAYS * DAY_MS) {
      errors.push({ field: 'to', messages: [`a report covers at most ${MAX_REPORT_DAYS} days`] });
    }
    if (errors.length > 0) throw new ValidationProblem(errors);
    // Only scheduled reports are unique per period, so an admin's is always stored.
    return (await this.generate({ start: start!, end: end! }, by))!;
  }

  /**
   * Builds and stores a report. `by` is `schedule` for the scheduled ones: those exist once per
   * kind and period, so when another instance was first this returns null and announces nothing.
   */
  async generate(period: TimeWindow, by: string): Promise<StoredReport | null> {
    const kind = kindOf(period);
    const data = await this.build(period);
    const rows = await this.dataSource.query<{ id: string; generated_at: Date }[]>(
      `INSERT INTO usage_reports (kind, period_start, period_end, generated_by, data)
       VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (kind, period_start) WHERE generated_by = 'schedule' DO NOTHING
       RETURNING id, generated_at`,
      [kind, period.start, period.end, by, JSON.stringify(data)],
    );
    if (rows.length === 0) return null;
    const report: StoredReport = {
      id: rows[0].id,
      kind,
      periodStart: period.start,
      periodEnd: period.end,
      generatedBy: by,
      generatedAt: rows[0].generated_at,
      data,
    };
    this.logger.log(`Usage report ${kind} ${dayLabel(period.start)} stored (${report.id})`);
    if (kind !== 'custom') {
      const event: ReportGeneratedEvent = {
        id: report.id,
        kind,
        periodStart: period.start,
        periodEnd: period.end,
        summaryHtml: summaryHtml(report),
        csv: reportCsv(data),
      };
      this.events.emit(REPORT_GENERATED, event);
    }
    return report;
  }

  /** Whether the scheduled report of a period exists already. */
  async scheduledExists(kind: 'daily' | 'monthly', periodStart: Date): Promise<boolean> {
    const [row] = await this.dataSource.query<{ found: boolean }[]>(
      `SELECT EXISTS (SELECT 1 FROM usage_reports WHERE kind = $1 AND period_start = $2 AND generated_by = 'schedule') AS found`,
      [kind, periodStart],
    );
    return row.found;
  }

  async list(filter: { kind?: ReportKind; page: number; pageSize: number }) {
    const params: unknown[] = [filter.kind ?? null, filter.pageSize, (filter.page - 1) * filter.pageSize];
    const rows = await this.dataSource.query<
      (Omit<ReportSummary, 'totals'> & { totals: ReportData['totals']; total: string })[]
    >(
      `SELECT id, kind, period_start AS "periodStart", period_end AS "periodEnd", generated_by AS "generatedBy",
              generated_at AS "generatedAt", data -> 'totals' AS totals, count(*) OVER () AS total
         FROM usage_reports
        WHERE ($1::text IS NULL OR kind = $1)
        ORDER BY period_start DESC, generated_at DESC
        LIMIT $2 OFFSET $3`,
      params,
    );
    let total = rows.length > 0 ? Number(rows[0].total) : 0;
    if (rows.length === 0 && filter.page > 1) {
      const [c] = await this.dataSource.query<{ n: number }[]>(
        `SELECT count(*)::int AS n FROM usage_reports WHERE ($1::text IS NULL OR kind = $1)`,
        [filter.kind ?? null],
      );
      total = c.n;
    }
    const reports: ReportSummary[] = rows.map(({ total: _total, ...r }) => r);
    return { reports, total, page: filter.page, pageSize: filter.pageSize };
  }

  async get(id: string): Promise<StoredReport> {
    const [row] = await this.dataSource.query<StoredReport[]>(
      `SELECT id, kind, period_start AS "periodStart", period_end AS "periodEnd", generated_by AS "generatedBy",
              generated_at AS "generatedAt", data
         FROM usage_reports WHERE id = $1`,
      [id],
    );
    if (!row) throw notFound('Report', id);
    return row;
  }

  async csv(id: string): Promise<{ report: StoredReport; csv: string }> {
    const report = await this.get(id);
    return { report, csv: reportCsv(report.data) };
  }

  private async groups(period: TimeWindow, dimension: ReportDimension): Promise<GroupRow[]> {
    const d = ROLLUP_DIMENSIONS[dimension];
    const rows = await this.dataSource.query<GroupRow[]>(
      `SELECT ${d.select}, ${ROLLUP_METRICS}
         FROM usage_rollups r ${d.join}
        WHERE r.bucket = 'day' AND r.period_start >= $1 AND r.period_start < $2
        GROUP BY ${d.groupBy}
        ORDER BY ${d.orderBy}`,
      [period.start, period.end],
    );
    return rows.map(({ id, label, provider, ...m }) => ({
      id,
      label,
      provider,
      ...round(pickMetrics(m)),
    }));
  }

  private async totals(period: TimeWindow): Promise<ReportMetrics> {
    const [row] = await this.dataSource.query<ReportMetrics[]>(
      `SELECT ${ROLLUP_METRICS} FROM usage_rollups r
        WHERE r.bucket = 'day' AND r.period_start >= $1 AND r.period_start < $2`,
      [period.start, period.end],
    );
    return round(pickMetrics(row ?? emptyMetrics()));
  }

  private async errorTypes(period: TimeWindow): Promise<ReportErrorRow[]> {
    return this.dataSource.query<ReportErrorRow[]>(
      `SELECT r.error_type AS "errorType", (r.key_id IS NULL) AS keyless, sum(r.requests)::float8 AS requests
         FROM usage_rollups r
        WHERE r.bucket = 'day' AND r.period_start >= $1 AND r.period_start < $2 AND r.error_type <> ''
        GROUP BY 1, 2
        ORDER BY requests DESC, 1, 2`,
      [period.start, period.end],
    );
  }

  private async days(period: TimeWindow): Promise<ReportDay[]> {
    const rows = await this.dataSource.query<(ReportMetrics & { period: string })[]>(
      `SELECT to_char(r.period_start AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS period, ${ROLLUP_METRICS}
         FROM usage_rollups r
        WHERE r.bucket = 'day' AND r.period_start >= $1 AND r.period_start < $2
        GROUP BY 1`,
      [period.start, period.end],
    );
    const byDay = new Map(rows.map((r) => [r.period, r]));
    return daysOf(period).map((day) => {
      const r = byDay.get(day);
      return { period: day, ...(r ? round(pickMetrics(r)) : emptyMetrics()) };
    });
  }
}

function pickMetrics(m: ReportMetrics): ReportMetrics {
  const out = emptyMetrics();
  for (const k of Object.keys(out) as (keyof ReportMetrics)[]) out[k] = Number(m[k]);
  return out;
}

const changeText = (change: number | null) =>
  change === null ? '—' : `${change > 0 ? '+' : ''}${formatPercent(change)}`;

/** The report in a few lines of HTML for an email body: totals, change, top spenders. */
export function summaryHtml(report: StoredReport): string {
  const d = report.data;
  const last = dayLabel(addDays(report.periodEnd, -1));
  const first = dayLabel(report.periodStart);
  const title = `Keyward ${report.kind} usage report, ${first === last ? first : `${first} – ${last}`} (UTC)`;
  const cell = (v: string) => `<td>${escapeXml(v)}</td>`;
  const spenders = (rows: typeof d.topSpenders.keys) =>
    rows.length === 0
      ? '<p>No spend.</p>'
      : `<table><tr><th>Name</th><th>Requests</th><th>Cost</th></tr>${rows
          .map((r) => `<tr>${cell(r.label)}${cell(formatCount(r.requests))}${cell(formatUsd(r.cost))}</tr>`)
          .join('')}</table>`;
  return [
    `<h1>${escapeXml(title)}</h1>`,
    '<table>',
    `<tr><th>Requests</th>${cell(formatCount(d.totals.requests))}${cell(changeText(d.change.requests))}</tr>`,
    `<tr><th>Tokens</th>${cell(formatCount(d.totals.tokens))}${cell(changeText(d.change.tokens))}</tr>`,
    `<tr><th>Errors</th>${cell(`${formatCount(d.totals.errors)} (${formatPercent(d.totals.errorRate)})`)}${cell('')}</tr>`,
    `<tr><th>Refused by Keyward</th>${cell(formatCount(d.totals.refusals))}${cell('')}</tr>`,
    `<tr><th>Cost</th>${cell(formatUsd(d.totals.cost))}${cell(changeText(d.change.cost))}</tr>`,
    `<tr><th>Reported by applications</th>${cell(`${formatCount(d.totals.reportedRequests)} requests, ${formatUsd(d.totals.reportedCost)}`)}${cell('')}</tr>`,
    '</table>',
    '<h2>Top keys</h2>',
    spenders(d.topSpenders.keys),
    '<h2>Top access tokens</h2>',
    spenders(d.topSpenders.tokens),
    '<h2>Top models</h2>',
    spenders(d.topSpenders.models),
    '<p>The full report is attached as CSV.</p>',
  ].join('\n');
}
