import { Controller, Get, HttpCode, Post, Query } from '@nestjs/common';
import { CheckPolicies } from '../auth/decorators';
import { AuditCheckpointService } from './audit-checkpoints';
import { Audit } from './audit.decorator';
import { AuditService } from './audit.service';
import { toAuditView } from './audit.view';
import { AuditQueryDto } from './dto/audit-query.dto';

@Controller('api/admin/audit')
export class AuditController {
  constructor(
    private readonly audit: AuditService,
    private readonly checkpoints: AuditCheckpointService,
  ) {}

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

  /** Signs the chain's head now (before a backup, say); periodic ones happen on their own. */
  @Post('checkpoints')
  @HttpCode(201)
  @Audit('audit.checkpoint', 'AuditLog')
  @CheckPolicies((ability) => ability.can('create', 'AuditLog'))
  async checkpoint() {
    const checkpoint = await this.checkpoints.take('manual');
    return { checkpoint };
  }
}
