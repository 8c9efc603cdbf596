import { Body, Controller, Get, Param, ParseUUIDPipe, Post, Query, Res } from '@nestjs/common';
import type { Response } from 'express';
import { Audit } from '../audit/audit.decorator';
import type { AuthUser } from '../auth/auth.types';
import { CheckPolicies, CurrentUser } from '../auth/decorators';
import { dayLabel, addDays } from '../usage/usage-math';
import { CreateReportDto } from './dto/create-report.dto';
import { ListReportsQuery } from './dto/list-reports.query';
import { ReportsService, type StoredReport } from './reports.service';

export const reportId = new ParseUUIDPipe({ version: '4' });

/** `usage-2026-11-01_2026-11-30.csv`: the days a report covers, in its file name. */
export const csvFileName = (r: Pick<StoredReport, 'periodStart' | 'periodEnd'>) =>
  `usage-${dayLabel(new Date(r.periodStart))}_${dayLabel(addDays(new Date(r.periodEnd), -1))}.csv`;

/** Stored usage reports: list, one, its CSV, and one made on demand. */
@Controller('api/admin/reports')
export class ReportsController {
  constructor(private readonly reports: ReportsService) {}

  @Get()
  @CheckPolicies((ability) => ability.can('read', 'Usage'))
  list(@Query() query: ListReportsQuery) {
    return this.reports.list(query);
  }

  // Before `:id`, which would otherwise take `…id.csv` as an id (and refuse it).
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
  get(@Param('id', reportId) id: string) {
    return this.reports.get(id);
  }

  @Post()
  @Audit('report.create', 'Report')
  @CheckPolicies((ability) => ability.can('create', 'Usage'))
  create(@Body() dto: CreateReportDto, @CurrentUser() actor: AuthUser) {
    return this.reports.generateFor(dto.from, dto.to, actor.email);
  }
}
