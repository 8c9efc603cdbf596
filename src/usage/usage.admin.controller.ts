import { Controller, Get, Param, Query, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { CheckPolicies } from '../auth/decorators';
import { validateForm } from '../common/validation';
import { render } from '../common/views';
import { usageText } from '../keys/keys.admin.controller';
import { keyId } from '../keys/keys.controller';
import { ProviderRegistry } from '../plugin-system/provider-registry';
import { usageChartSvg } from './chart';
import { UsagePageQuery } from './dto/usage-page.query';
import { NO_KEY_LABEL } from '../reports/report-sql';
import { tokenId } from '../access-tokens/access-tokens.controller';
import { sparklineSvg } from './sparkline';
import { usageReportCsv } from './usage-csv';
import { type KeyCost, UsageReportsService } from './usage-reports.service';
import { budgetTrend, type GroupTrend, UsageTrendsService } from './usage-trends.service';
import { REPORT_GROUPS, type ReportGroup } from './dto/usage-report.query';
import {
  addDays,
  DAY_MS,
  dayLabel,
  MAX_REPORT_DAYS,
  parseBound,
  startOfUtcDay,
  startOfUtcMonth,
  errorRate,
  formatCount,
  formatPercent,
  formatUsd,
  PROJECTION_FORMULA,
  RANGE_LABELS,
  rangeWindow,
  sumMetrics,
  type TimeWindow,
  USAGE_RANGES,
  type UsageTotals,
} from './usage-math';

/** An error rate from which a row is flagged. */
const HIGH_ERROR_RATE = 0.05;

const PERIOD_LABELS: Record<KeyCost['period'], string> = {
  daily: 'today',
  weekly: 'this week',
  monthly: 'this month',
  month: 'this month (no periodic limit)',
};

const SEVERITY_CLASSES: Record<string, string> = { critical: 'status-bad', warning: 'status-warn', info: 'muted' };

const str = (value: unknown): string | undefined => (typeof value === 'string' ? value : undefined);

/** `2026-11-01 – 2026-11-30 (UTC)`: the days of a half-open window. */
const windowText = (w: TimeWindow) => {
  const first = dayLabel(w.start);
  const last = dayLabel(addDays(w.end, -1));
  return first === last ? `${first} (UTC)` : `${first} – ${last} (UTC)`;
};

/** A metrics row as table cells: numbers formatted, a high error rate flagged. */
function cells(m: UsageTotals & { errorRate: number }) {
  return {
    requests: formatCount(m.requests),
    tokens: formatCount(m.tokens),
    inputTokens: formatCount(m.inputTokens),
    outputTokens: formatCount(m.outputTokens),
    errors: formatCount(m.errors),
    errorRate: formatPercent(m.errorRate),
    errorClass: m.errorRate >= HIGH_ERROR_RATE ? 'status-bad' : '',
    cost: formatUsd(m.cost),
  };
}

/** One line of the trends tables: burn rate, where the month ends, when a budget runs out. */
function trendRow(g: GroupTrend, groupBy: 'model' | 'token', canLink: boolean) {
  const exceeding = g.budgets
    .filter((b) => b.projection.exceedsOn !== null)
    .sort((a, b) => a.projection.exceedsOn!.localeCompare(b.projection.exceedsOn!));
  return {
    id: g.id,
    label: g.label,
    provider: g.provider,
    link: groupBy === 'token' && canLink && g.id !== 'none' ? `/admin/usage/tokens/${g.id}` : null,
    monthToDate: formatUsd(g.monthToDate),
    burnRate: `${formatUsd(g.projection.burnRatePerDay)}/day`,
    slope: `${g.projection.slopePerDay >= 0 ? '+' : ''}${formatUsd(g.projection.slopePerDay)}/day²`,
    projected: formatUsd(g.projection.projectedAtPeriodEnd),
    budgets: g.budgets.length,
    exceedsOn: exceeding[0]?.projection.exceedsOn ?? null,
    exceedsWhat: exceeding[0] ? `${exceeding[0].budget.unit} ${exceeding[0].budget.period}` : null,
    sparkline: sparklineSvg(
      g.series.map((d) => ({ period: d.day, cost: d.cost })),
      { id: `trend-${groupBy}-${g.id}`, title: `${g.label}: cost per day, last 30 days` },
    ),
  };
}

/**
 * Console → Usage: the spec's UsageMonitoring (UsageMetrics, CostTracking, recent alerts) and a
 * per-key usage section. Same service as the JSON API. The page polls `/admin/usage/live` every
 * five seconds through htmx; its filters are a plain GET form, so they work without JavaScript.
 */
@Controller('admin/usage')
export class UsageAdminController {
  constructor(
    private readonly reports: UsageReportsService,
    private readonly registry: ProviderRegistry,
    private readonly trends: UsageTrendsService,
  ) {}

  /** The range on the page as a CSV download (the console's session cannot call the JSON API). */
  @Get('export.csv')
  @CheckPolicies((ability) => ability.can('read', 'Usage'))
  async exportCsv(@Req() req: Request, @Res() res: Response, @Query() raw: Record<string, unknown>) {
    const groupBy = str(raw.groupBy) ?? 'key';
    const { filters, window, errors } = await this.filtersOf({ ...raw, groupBy: undefined });
    if (errors.length > 0 || !(REPORT_GROUPS as readonly string[]).includes(groupBy)) {
      res
        .status(400)
        .type('text/plain')
        .send(errors.flatMap((e) => e.messages).join('; ') || 'Unknown grouping');
      return;
    }
    const w = window ?? rangeWindow(filters.range === 'custom' ? 'month' : filters.range, new Date());
    const report = await this.reports.report({
      from: dayLabel(w.start),
      to: dayLabel(addDays(w.end, -1)),
      provider: filters.provider,
      groupBy: groupBy as ReportGroup,
    });
    res.setHeader('Content-Type', 'text/csv; charset=utf-8');
    res.setHeader(
      'Content-Disposition',
      `attachment; filename="usage-by-${groupBy}-${dayLabel(w.start)}_${dayLabel(addDays(w.end, -1))}.csv"`,
    );
    res.send(usageReportCsv(report));
  }

  /** One access token: this month's usage per key and model, 30 days, and spend against its budgets. */
  @Get('tokens/:id')
  @CheckPolicies((ability) => ability.can('read', 'Usage'))
  async tokenUsage(@Req() req: Request, @Res() res: Response, @Param('id', tokenId) id: string) {
    const data = await this.reports.tokenOverview(id);
    const days = data.daily.map((d) => ({
      day: d.period,
      requests: d.requests,
      tokens: d.tokens,
      cost: d.cost,
      trend: 0,
    }));
    const total = data.byKey.totals;
    render(req, res, 'usage/token', {
      title: `Usage of ${data.token.name}`,
      nav: 'usage',
      token: data.token,
      monthWindow: windowText(data.month),
      totals: cells(total),
      byKey: data.byKey.rows.map((r) => ({
        keyId: r.keyId,
        keyName: r.keyId ? (r.keyName ?? 'deleted key') : NO_KEY_LABEL,
        keyless: !r.keyId,
        provider: r.provider,
        ...cells(r),
      })),
      byModel: data.byModel.rows.map((r) => ({
        provider: r.provider,
        model: r.model ?? 'unknown model',
        unpriced: (r.unpricedRequests ?? 0) > 0 ? formatCount(r.unpricedRequests ?? 0) : null,
        ...cells(r),
      })),
      budgets: data.budgets.map((b) => {
        const trend = budgetTrend(b, days, data.asOf);
        const fmt = (n: number) => (b.unit === 'usd' ? formatUsd(n) : formatCount(n));
        return {
          unit: b.unit,
          period: b.period === 'total' ? 'in total' : b.period,
          used: fmt(b.used),
          limit: fmt(b.limit),
          reserved: b.reserved > 0 ? fmt(b.reserved) : null,
          percent: b.limit > 0 ? formatPercent(b.used / b.limit) : '—',
          value: b.used,
          max: b.limit,
          high: b.limit * 0.8,
          over: b.used >= b.limit,
          resetAt: b.resetAt,
          projected: fmt(trend.projection.projectedAtPeriodEnd),
          exceedsOn: trend.projection.exceedsOn,
        };
      }),
      chart: usageChartSvg(data.daily, {
        id: `token-usage-chart-${data.token.id}`,
        title: `${data.token.name}: requests and cost per day, last 30 days`,
      }),
      asOf: data.asOf,
    });
  }

  @Get()
  @CheckPolicies((ability) => ability.can('read', 'Usage'))
  async index(@Req() req: Request, @Res() res: Response, @Query() raw: Record<string, unknown>) {
    await this.overview(req, res, raw);
  }

  /** What the page polls: the same answer, for htmx just the live part. */
  @Get('live')
  @CheckPolicies((ability) => ability.can('read', 'Usage'))
  async live(@Req() req: Request, @Res() res: Response, @Query() raw: Record<string, unknown>) {
    await this.overview(req, res, raw);
  }

  /** One key's usage against its limit, 30 days and costs: a section the key page can pull in. */
  @Get('keys/:id')
  @CheckPolicies((ability) => ability.can('read', 'Usage'))
  async keyUsage(@Req() req: Request, @Res() res: Response, @Param('id', keyId) id: string) {
    const { key, usage } = await this.reports.keyOverview(id);
    const limit = usage.usage.limit;
    const total = sumMetrics(usage.history.daily);
    render(
      req,
      res,
      'usage/key',
      {
        title: `Usage of ${key.name}`,
        nav: 'usage',
        key: { id: key.id, name: key.name, provider: key.provider, hint: key.secretHint },
        usage: {
          ...usage.usage,
          text: usageText({
            ...usage.usage,
            unit: usage.usage.unit ?? undefined,
            period: usage.usage.period ?? undefined,
          }),
          high: limit === null ? null : limit * 0.8,
          over: limit !== null && usage.usage.current >= limit,
        },
        last30: cells({ ...total, errorRate: errorRate(total.errors, total.requests) }),
        costs: {
          current: formatUsd(usage.costs.current),
          projected: formatUsd(usage.costs.projected),
          window: windowText(usage.costs.period),
          // The same window as the limit's count: its period, or the calendar month without one.
          periodLabel:
            PERIOD_LABELS[
              limit !== null && usage.usage.period && usage.usage.period !== 'never' ? usage.usage.period : 'month'
            ],
          // A USD limit counts cost too: where the two differ, the count was restarted in this period.
          counterDiffers:
            usage.usage.unit === 'usd' &&
            limit !== null &&
            Math.abs(usage.usage.current - usage.costs.current) >= 0.000001 &&
            usage.usage.period !== 'never',
          counter: formatUsd(usage.usage.current),
          formula: usage.costs.formula,
        },
        chart: usageChartSvg(usage.history.daily, {
          id: `key-usage-chart-${key.id}`,
          title: `${key.name}: requests and cost per day, last 30 days`,
        }),
        asOf: usage.costs.asOf,
      },
      { partial: 'usage/key' },
    );
  }

  /** The filters of the page, validated; a custom range is whole UTC days, `to` included. */
  private async filtersOf(raw: Record<string, unknown>) {
    const given: Record<string, string> = {};
    for (const name of ['range', 'provider', 'from', 'to']) {
      const value = str(raw[name])?.trim();
      if (value) given[name] = value;
    }
    // From and To make a custom range; a range picked by name (the form sends its own days in
    // From and To) wins over them, so choosing "last 7 days" is never read as a custom range.
    if (given.range && given.range !== 'custom') {
      delete given.from;
      delete given.to;
    } else if (given.from || given.to) {
      given.range = 'custom';
    }
    const { dto, errors } = await validateForm(UsagePageQuery, given);
    let window: TimeWindow | undefined;
    if (errors.length === 0 && dto.range === 'custom') {
      const now = new Date();
      const start = dto.from ? parseBound(dto.from, 'start') : startOfUtcMonth(now);
      const end = dto.to ? parseBound(dto.to, 'end') : addDays(startOfUtcDay(now), 1);
      if (!start || !end || start.getTime() % DAY_MS !== 0 || end.getTime() % DAY_MS !== 0) {
        errors.push({ field: 'from', messages: ['From and To must be dates such as 2026-01-31'] });
      } else if (start.getTime() >= end.getTime()) {
        errors.push({ field: 'to', messages: ['To must be on or after From'] });
      } else if (end.getTime() - start.getTime() > MAX_REPORT_DAYS * DAY_MS) {
        errors.push({ field: 'to', messages: [`A range covers at most ${MAX_REPORT_DAYS} days`] });
      } else {
        window = { start, end };
      }
    }
    // Invalid filters show the default view with the message, and a 400.
    const filters = errors.length > 0 ? new UsagePageQuery() : dto;
    return { filters, window: errors.length > 0 ? undefined : window, errors };
  }

  private async overview(req: Request, res: Response, raw: Record<string, unknown>) {
    const { filters, window, errors } = await this.filtersOf(raw);
    const canReadTokens = req.ability?.can('read', 'AccessToken') ?? false;
    const [data, trends] = await Promise.all([
      this.reports.overview({
        range: filters.range,
        window,
        provider: filters.provider ?? null,
        withAlerts: req.ability?.can('read', 'Alert') ?? false,
      }),
      Promise.all([this.trends.trends('model'), this.trends.trends('token')]),
    ]);
    const query = new URLSearchParams({
      range: filters.range,
      ...(filters.provider ? { provider: filters.provider } : {}),
      ...(window ? { from: dayLabel(window.start), to: dayLabel(addDays(window.end, -1)) } : {}),
    });
    const exportQuery = (groupBy: string) => {
      const q = new URLSearchParams({
        from: dayLabel(data.window.start),
        to: dayLabel(addDays(data.window.end, -1)),
        groupBy,
        ...(filters.provider ? { provider: filters.provider } : {}),
      });
      return `/admin/usage/export.csv?${q.toString()}`;
    };
    const rangeLabel = filters.range === 'custom' ? 'custom range' : RANGE_LABELS[filters.range];
    const chartTitle = `Requests and cost per day, ${rangeLabel}${filters.provider ? ` (${filters.provider})` : ''}`;
    render(
      req,
      res,
      'usage/index',
      {
        title: 'Usage',
        nav: 'usage',
        filters: {
          range: filters.range,
          provider: filters.provider ?? '',
          from: dayLabel(data.window.start),
          to: dayLabel(addDays(data.window.end, -1)),
        },
        filterErrors: errors.flatMap((e) => e.messages),
        ranges: [
          ...USAGE_RANGES.map((value) => ({ value, label: RANGE_LABELS[value], selected: value === filters.range })),
          { value: 'custom', label: 'custom (From – To)', selected: filters.range === 'custom' },
        ],
        providers: this.registry.loaded().map(({ plugin }) => ({
          id: plugin.config.id,
          name: plugin.config.name,
          selected: plugin.config.id === filters.provider,
        })),
        liveUrl: `/admin/usage/live?${query.toString()}`,
        rangeLabel,
        rangeWindow: windowText(data.window),
        totals: cells(data.byProvider.totals),
        refusals: formatCount(data.byKey.rows.reduce((a, r) => a + (r.refusals ?? 0), 0)),
        byKey: data.byKey.rows.map((r) => ({
          keyId: r.keyId,
          keyName: r.keyId ? (r.keyName ?? 'deleted key') : NO_KEY_LABEL,
          keyless: !r.keyId,
          deleted: r.keyId !== null && r.keyName === null,
          provider: r.provider,
          ...cells(r),
        })),
        byProvider: data.byProvider.rows.map((r) => ({ provider: r.provider, ...cells(r) })),
        byModel: data.byModel.rows.map((r) => ({
          provider: r.provider,
          model: r.model ?? 'unknown model',
          unpriced: (r.unpricedRequests ?? 0) > 0 ? formatCount(r.unpricedRequests ?? 0) : null,
          ...cells(r),
        })),
        byToken: data.byToken.rows.map((r) => ({
          tokenId: r.accessTokenId,
          tokenName: r.accessTokenId ? (r.tokenName ?? 'deleted token') : 'no access token',
          link: canReadTokens && r.accessTokenId !== null && r.accessTokenId !== undefined && r.tokenName !== null,
          refusals: (r.refusals ?? 0) > 0 ? formatCount(r.refusals ?? 0) : null,
          ...cells(r),
        })),
        exportUrls: {
          key: exportQuery('key'),
          provider: exportQuery('provider'),
          model: exportQuery('model'),
          token: exportQuery('token'),
          day: exportQuery('day'),
        },
        keyCosts: data.costs.keys.map((k) => ({
          keyId: k.keyId,
          keyName: k.keyName,
          provider: k.provider,
          revoked: k.revoked,
          periodLabel: PERIOD_LABELS[k.period],
          window: windowText(k.window),
          current: formatUsd(k.current),
          projected: formatUsd(k.projected),
          budget: k.budget === null ? null : formatUsd(k.budget),
          overBudget: k.budget !== null && k.projected > k.budget,
        })),
        modelCosts: data.costs.models.map((m) => ({
          provider: m.provider,
          model: m.model ?? 'unknown model',
          current: formatUsd(m.current),
          projected: formatUsd(m.projected),
        })),
        trends: trends.map((t) => ({
          title: t.groupBy === 'model' ? 'Per model' : 'Per access token',
          id: t.groupBy,
          rows: t.groups.map((g) => trendRow(g, t.groupBy, canReadTokens)),
        })),
        monthWindow: windowText(data.costs.month),
        formula: PROJECTION_FORMULA,
        chart: usageChartSvg(data.daily, { id: 'usage-chart', title: chartTitle }),
        showAlerts: data.alerts !== null,
        alerts: (data.alerts ?? []).map((a) => ({
          ...a,
          createdIso: a.createdAt instanceof Date ? a.createdAt.toISOString() : String(a.createdAt),
          severityClass: SEVERITY_CLASSES[String(a.severity)] ?? '',
        })),
        asOf: data.asOf,
      },
      { partial: 'usage/live', status: errors.length > 0 ? 400 : 200 },
    );
  }
}
