import { Controller, Get, Query, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { CheckPolicies } from '../auth/decorators';
import { pager } from '../common/pagination';
import { render } from '../common/views';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { detailsSummary, detailsText, shortUserAgent } from './audit-display';
import { AUDIT_OUTCOMES, type AuditEntry } from './audit-entry.entity';
import { AuditService } from './audit.service';
import { AuditQueryDto } from './dto/audit-query.dto';

/** Security → Audit log: the same filters as GET /api/admin/audit, refreshed by htmx. */
@Controller('admin/audit')
export class AuditAdminController {
  constructor(
    private readonly audit: AuditService,
    @InjectDataSource() private readonly dataSource: DataSource,
  ) {}

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
        entries: await this.readable(page.entries),
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

  /**
   * What a person reads in the table: the target's name beside its id (a key's name from the
   * entry, a user's email from the users table), a short user agent, details collapsed.
   */
  private async readable(entries: AuditEntry[]) {
    const userIds = [
      ...new Set(entries.filter((e) => e.targetType === 'User' && e.targetId).map((e) => e.targetId!)),
    ].filter((id) => /^[0-9a-f-]{36}$/i.test(id));
    const emails = new Map<string, string>(
      userIds.length
        ? (
            await this.dataSource.query<{ id: string; email: string }[]>(
              `SELECT id, email FROM users WHERE id = ANY($1::uuid[])`,
              [userIds],
            )
          ).map((r) => [r.id, r.email])
        : [],
    );
    return entries.map((e) => {
      const subject = e.details.subject as { name?: unknown; email?: unknown } | undefined;
      const targetName =
        typeof subject?.name === 'string'
          ? subject.name
          : e.targetType === 'User' && e.targetId
            ? emails.get(e.targetId)
            : undefined;
      return {
        ...e,
        targetName,
        shortUserAgent: shortUserAgent(e.userAgent),
        detailsSummary: detailsSummary(e.details),
        details: detailsText(e.details),
      };
    });
  }

  @Get('verify')
  @CheckPolicies((ability) => ability.can('read', 'AuditLog'))
  async verify(@Req() req: Request, @Res() res: Response) {
    const report = await this.audit.verifyChain();
    render(req, res, 'audit/index', { title: 'Audit log', nav: 'audit', report }, { partial: 'audit/verify' });
  }
}
