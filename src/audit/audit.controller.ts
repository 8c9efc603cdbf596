import { Controller, Get, Query } from '@nestjs/common';
import { CheckPolicies } from '../auth/decorators';
import { AuditService } from './audit.service';
import { toAuditView } from './audit.view';
import { AuditQueryDto } from './dto/audit-query.dto';

@Controller('api/admin/audit')
export class AuditController {
  constructor(private readonly audit: AuditService) {}

  @Get()
  @CheckPolicies((ability) => ability.can('read', 'AuditLog'))
  async list(@Query() query: AuditQueryDto) {
    const page = await this.audit.list(query);
    return { ...page, entries: page.entries.map(toAuditView) };
  }

  /** Recomputes the whole hash chain; `firstBreak` names the first entry that fails. */
  @Get('verify')
  @CheckPolicies((ability) => ability.can('read', 'AuditLog'))
  verify() {
    return this.audit.verifyChain();
  }
}
