import { RequiresMfa } from '../auth/mfa/requires-mfa.decorator';
import { Body, Controller, Delete, Get, HttpCode, Param, ParseUUIDPipe, Post, Req } from '@nestjs/common';
import type { Request } from 'express';
import { Audit } from '../audit/audit.decorator';
import type { AppAbility } from '../auth/abilities';
import type { AuthUser } from '../auth/auth.types';
import { CheckPolicies, CurrentAbility, CurrentUser } from '../auth/decorators';
import { clientIp } from '../common/http';
import { CreateIpRuleDto } from './dto/create-ip-rule.dto';
import { SecurityService } from './security.service';

const uuid = new ParseUUIDPipe({ version: '4' });

/** IP allowlists for people and sign-in lockouts, for scripts; the console has the same. */
@Controller('api/admin')
export class SecurityController {
  constructor(private readonly security: SecurityService) {}

  @Get('ip-rules')
  @CheckPolicies((ability) => ability.can('read', 'User'))
  async listRules() {
    return { rules: await this.security.rules() };
  }

  @RequiresMfa()
  @Post('ip-rules')
  @Audit('ip_rule.create', 'IpRule')
  @CheckPolicies((ability) => ability.can('update', 'User'))
  async createRule(
    @Body() dto: CreateIpRuleDto,
    @CurrentUser() user: AuthUser,
    @CurrentAbility() ability: AppAbility,
    @Req() req: Request,
  ) {
    return this.security.createRule(dto, { ...user, ip: clientIp(req) }, ability);
  }

  @RequiresMfa()
  @Delete('ip-rules/:id')
  @HttpCode(200)
  @Audit('ip_rule.delete', 'IpRule')
  @CheckPolicies((ability) => ability.can('update', 'User'))
  async deleteRule(
    @Param('id', uuid) id: string,
    @CurrentUser() user: AuthUser,
    @CurrentAbility() ability: AppAbility,
    @Req() req: Request,
  ) {
    return this.security.removeRule(id, { ...user, ip: clientIp(req) }, ability);
  }

  @Get('lockouts')
  @CheckPolicies((ability) => ability.can('read', 'User'))
  async lockouts() {
    return { lockouts: await this.security.lockouts() };
  }

  /** Lifts a sign-in lockout before it runs out. */
  @Delete('lockouts/:userId')
  @HttpCode(200)
  @Audit('auth.unlock', 'User', 'userId')
  @CheckPolicies((ability) => ability.can('update', 'User'))
  async unlock(@Param('userId', uuid) userId: string, @CurrentAbility() ability: AppAbility) {
    return this.security.unlock(userId, ability);
  }
}
