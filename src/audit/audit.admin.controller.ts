import { Controller, Get, Query, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { CheckPolicies } from '../auth/decorators';
import { pager } from '../common/pagination';
import { render } from '../common/views';
import { AUDIT_OUTCOMES } from './audit-entry.entity';
import { AuditService } from './audit.service';
import { AuditQueryDto } from './dto/audit-query.dto';

/** Security → Audit log: the same filters as GET /api/admin/audit, refreshed by htmx. */
@Controller('admin/audit')
export class AuditAdminController {
  constructor(private readonly audit: AuditService) {}

  @Get()
  @CheckPolicies((ability) => ability.can('read', 'AuditLog'))
  async index(@Req() req: Request, @Res() res: Response, @Query() query: AuditQueryDto) {
    const page = await this.audit.list(query);
    render(
      req,
      res,
      'audit/index',
      {
        title: 'Audit log',
        nav: 'audit',
        entries: page.entries.map((e) => ({
          ...e,
          details: Object.keys(e.details).length ? JSON.stringify(e.details) : '',
        })),
        pager: pager(page.page, page.pageSize, page.total),
        filters: {
          ...query,
          from: query.from?.toISOString().slice(0, 16),
          to: query.to?.toISOString().slice(0, 16),
        },
        outcomes: AUDIT_OUTCOMES,
      },
      { partial: 'audit/results' },
    );
  }

  @Get('verify')
  @CheckPolicies((ability) => ability.can('read', 'AuditLog'))
  async verify(@Req() req: Request, @Res() res: Response) {
    const report = await this.audit.verifyChain();
    render(req, res, 'audit/index', { title: 'Audit log', nav: 'audit', report }, { partial: 'audit/verify' });
  }
}
