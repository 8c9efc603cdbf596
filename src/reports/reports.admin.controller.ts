import { Body, Controller, Get, Param, Post, Query, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { Audit } from '../audit/audit.decorator';
import { CheckPolicies } from '../auth/decorators';
import { redirect } from '../common/http';
import { pager } from '../common/pagination';
import { type FieldError, ValidationProblem } from '../common/problem';
import { validateForm } from '../common/validation';
import { render } from '../common/views';
import { usageChartSvg } from '../usage/chart';
import { barsSvg } from '../usage/sparkline';
import {
  addDays,
  dayLabel,
  formatCount,
  formatPercent,
  formatUsd,
  startOfUtcDay,
  startOfUtcMonth,
} from '../usage/usage-math';
import { CreateReportDto } from './dto/create-report.dto';
import { ListReportsQuery } from './dto/list-reports.query';
import type { ReportRow, ReportTotals } from './report-data';
import { csvFileName, reportId } from './reports.controller';
import { ReportsService, type StoredReport } from './reports.service';

/** `+25%`, `−10%`, or a dash where there was nothing to compare with. */
export const changeText = (change: number | null) =>
  change === null ? '—' : `${change > 0 ? '+' : ''}${formatPercent(change)}`;

const periodText = (r: Pick<StoredReport, 'periodStart' | 'periodEnd'>) => {
  const first = dayLabel(new Date(r.periodStart));
  const last = dayLabel(addDays(new Date(r.periodEnd), -1));
  return first === last ? first : `${first} – ${last}`;
};

function metricCells(m: ReportTotals | ReportRow) {
  return {
    requests: formatCount(m.requests),
    inputTokens: formatCount(m.inputTokens),
    outputTokens: formatCount(m.outputTokens),
    errors: formatCount(m.errors),
    errorRate: formatPercent(m.errorRate),
    errorClass: m.errorRate >= 0.05 ? 'status-bad' : '',
    cost: formatUsd(m.cost),
    reported: m.reportedRequests > 0 ? `${formatCount(m.reportedRequests)} (${formatUsd(m.reportedCost)})` : null,
    refusals: m.refusals > 0 ? formatCount(m.refusals) : null,
    unpriced: m.unpricedRequests > 0 ? formatCount(m.unpricedRequests) : null,
  };
}

const rowCells = (r: ReportRow) => ({
  id: r.id,
  label: r.label,
  provider: r.provider,
  ...metricCells(r),
  costChange: changeText(r.change.cost),
  requestsChange: changeText(r.change.requests),
});

/** Console → Usage → Reports: the stored reports, one report with charts, its CSV, a new one. */
@Controller('admin/reports')
export class ReportsAdminController {
  constructor(private readonly reports: ReportsService) {}

  @Get()
  @CheckPolicies((ability) => ability.can('read', 'Usage'))
  async index(@Req() req: Request, @Res() res: Response, @Query() raw: Record<string, unknown>) {
    await this.renderIndex(req, res, raw, {}, [], 200);
  }

  @Post()
  @Audit('report.create', 'Report')
  @CheckPolicies((ability) => ability.can('create', 'Usage'))
  async create(@Req() req: Request, @Res() res: Response, @Body() body: Record<string, unknown>) {
    const form = { from: String(body.from ?? '').trim(), to: String(body.to ?? '').trim() };
    const { errors } = await validateForm(CreateReportDto, form);
    if (errors.length > 0) return this.renderIndex(req, res, {}, form, errors, 400);
    try {
      const report = await this.reports.generateFor(form.from, form.to, req.authUser!.email);
      redirect(req, res, `/admin/reports/${report.id}`);
    } catch (error) {
      if (!(error instanceof ValidationProblem)) throw error;
      await this.renderIndex(req, res, {}, form, error.errors, 400);
    }
  }

  @Get(':id.csv')
  @CheckPolicies((ability) => ability.can('read', 'Usage'))
  async csv(@Param('id', reportId) id: string, @Res() res: Response) {
    const { report, csv } = await this.reports.csv(id);
    res.setHeader('Content-Type', 'text/csv; charset=utf-8');
    res.setHeader('Content-Disposition', `attachment; filename="${csvFileName(report)}"`);
    res.send(csv);
  }

  @Get(':id')
  @CheckPolicies((ability) => ability.can('read', 'Usage'))
  async show(@Req() req: Request, @Res() res: Response, @Param('id', reportId) id: string) {
    const report = await this.reports.get(id);
    const d = report.data;
    const bars = (rows: ReportRow[], what: string) =>
      barsSvg(
        rows.map((r) => ({ label: r.label, value: r.cost, text: formatUsd(r.cost) })),
        { id: `report-${what}-bars`, title: `Top ${what} by cost, ${periodText(report)}` },
      );
    render(req, res, 'reports/show', {
      title: `Usage report ${periodText(report)}`,
      nav: 'usage',
      report: {
        id: report.id,
        kind: report.kind,
        period: periodText(report),
        previous: periodText({ periodStart: d.previousPeriod.start, periodEnd: d.previousPeriod.end }),
        generatedAt: report.generatedAt,
        generatedBy: report.generatedBy === 'schedule' ? 'on schedule' : report.generatedBy,
      },
      totals: metricCells(d.totals),
      previousTotals: metricCells(d.previousTotals),
      change: {
        requests: changeText(d.change.requests),
        cost: changeText(d.change.cost),
        tokens: changeText(d.change.tokens),
      },
      sections: [
        { id: 'providers', title: 'Per provider', rows: d.byProvider.map(rowCells) },
        { id: 'keys', title: 'Per key', rows: d.byKey.map(rowCells) },
        { id: 'models', title: 'Per model', rows: d.byModel.map(rowCells) },
        { id: 'tokens', title: 'Per access token', rows: d.byToken.map(rowCells) },
      ],
      errors: d.errors.map((e) => ({ ...e, requests: formatCount(e.requests) })),
      dailyChart: usageChartSvg(d.daily, {
        id: 'report-daily',
        title: `Requests and cost per day, ${periodText(report)}`,
      }),
      keyBars: d.topSpenders.keys.length > 0 ? bars(d.topSpenders.keys, 'keys') : null,
      tokenBars: d.topSpenders.tokens.length > 0 ? bars(d.topSpenders.tokens, 'access tokens') : null,
      modelBars: d.topSpenders.models.length > 0 ? bars(d.topSpenders.models, 'models') : null,
      csvUrl: `/admin/reports/${report.id}.csv`,
    });
  }

  private async renderIndex(
    req: Request,
    res: Response,
    raw: Record<string, unknown>,
    form: Record<string, string>,
    formErrors: FieldError[],
    status: number,
  ) {
    const given: Record<string, unknown> = {};
    for (const name of ['kind', 'page']) if (typeof raw[name] === 'string' && raw[name] !== '') given[name] = raw[name];
    const { dto, errors } = await validateForm(ListReportsQuery, given);
    const query = errors.length > 0 ? Object.assign(new ListReportsQuery(), {}) : dto;
    const page = Number(query.page) || 1;
    const list = await this.reports.list({ kind: query.kind, page, pageSize: 25 });
    const today = startOfUtcDay(new Date());
    render(
      req,
      res,
      'reports/index',
      {
        title: 'Usage reports',
        nav: 'usage',
        filters: { kind: query.kind ?? '' },
        filterErrors: errors.flatMap((e) => e.messages),
        reports: list.reports.map((r) => ({
          id: r.id,
          kind: r.kind,
          period: periodText(r),
          generatedAt: r.generatedAt,
          generatedBy: r.generatedBy === 'schedule' ? 'on schedule' : r.generatedBy,
          requests: formatCount(r.totals.requests),
          cost: formatUsd(r.totals.cost),
          errorRate: formatPercent(r.totals.errorRate),
        })),
        pager: pager(page, 25, list.total),
        canCreate: req.ability?.can('create', 'Usage') ?? false,
        form: {
          from: form.from ?? dayLabel(startOfUtcMonth(today)),
          to: form.to ?? dayLabel(today),
        },
        errors: ValidationProblem.byField(formErrors),
      },
      { partial: 'reports/list', status: errors.length > 0 ? 400 : status },
    );
  }
}
