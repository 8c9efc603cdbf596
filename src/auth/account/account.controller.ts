import { Body, Controller, Get, HttpCode, Param, Post, Put, Req } from '@nestjs/common';
import type { Request } from 'express';
import { auditContext } from '../../audit/audit-context';
import { Audit, SkipAudit } from '../../audit/audit.decorator';
import type { AppAbility } from '../abilities';
import { AuthService } from '../auth.service';
import type { AuthUser } from '../auth.types';
import { CheckPolicies, CurrentAbility, CurrentUser } from '../decorators';
import { MfaService } from '../mfa/mfa.service';
import { RequiresMfa } from '../mfa/requires-mfa.decorator';
import { SessionService } from '../session.service';
import { toUserView } from '../users/user.view';
import { uuid } from '../users/users.controller';
import { UsersService } from '../users/users.service';
import { ChangePasswordDto, ResetPasswordDto } from './dto/change-password.dto';
import { MfaCodeDto, MfaPolicyDto } from './dto/mfa.dto';

const anyone = () => true;

/** One's own account over the JSON API: second factor, password, sessions. */
@Controller('api/auth')
export class AccountController {
  constructor(
    private readonly mfa: MfaService,
    private readonly users: UsersService,
    private readonly sessions: SessionService,
    private readonly auth: AuthService,
  ) {}

  @Get('mfa')
  @CheckPolicies(anyone)
  async mfaStatus(@CurrentUser() user: AuthUser) {
    return this.mfa.status(user.id);
  }

  /** Returns the secret and its QR code once; confirm with a first code to switch it on. */
  @Post('mfa/enrol')
  @HttpCode(200)
  @SkipAudit()
  @CheckPolicies(anyone)
  async enrol(@CurrentUser() user: AuthUser, @Req() req: Request) {
    return this.mfa.beginEnrolment(user, auditContext(req));
  }

  @Post('mfa/confirm')
  @HttpCode(200)
  @SkipAudit()
  @CheckPolicies(anyone)
  async confirm(@CurrentUser() user: AuthUser, @Body() dto: MfaCodeDto, @Req() req: Request) {
    return { recoveryCodes: await this.mfa.confirm(user, dto.code, auditContext(req)) };
  }

  @Post('mfa/disable')
  @HttpCode(200)
  @SkipAudit()
  @CheckPolicies(anyone)
  async disable(@CurrentUser() user: AuthUser, @Body() dto: MfaCodeDto, @Req() req: Request) {
    await this.mfa.disable(user, dto.code, auditContext(req));
    return this.mfa.status(user.id);
  }

  @Post('mfa/recovery-codes')
  @HttpCode(200)
  @SkipAudit()
  @CheckPolicies(anyone)
  async regenerate(@CurrentUser() user: AuthUser, @Body() dto: MfaCodeDto, @Req() req: Request) {
    return { recoveryCodes: await this.mfa.regenerateRecoveryCodes(user, dto.code, auditContext(req)) };
  }

  /**
   * Changes one's own password. Every session and JWT of the user ends, including the one
   * that made this call; the answer carries a fresh token.
   */
  @Post('password')
  @HttpCode(200)
  @Audit('user.password-change', 'User')
  @CheckPolicies(anyone)
  async changePassword(@CurrentUser() actor: AuthUser, @Body() dto: ChangePasswordDto) {
    await this.users.changePassword(actor.id, dto.currentPassword, dto.newPassword);
    return this.auth.issueAccessToken(await this.users.get(actor.id));
  }

  @Get('sessions')
  @CheckPolicies(anyone)
  async listSessions(@CurrentUser() user: AuthUser) {
    return { sessions: await this.sessions.listFor(user.id, undefined) };
  }

  /** Ends every console session and invalidates every JWT of the caller (this one too). */
  @Post('sign-out-everywhere')
  @HttpCode(204)
  @Audit('auth.signout-everywhere', 'User')
  @CheckPolicies(anyone)
  async signOutEverywhere(@CurrentUser() user: AuthUser) {
    await this.users.signOutEverywhere(user.id);
  }
}

/** What owners (and admins, for non-owners) do to other accounts' security. */
@Controller('api/admin')
export class AccountAdminApiController {
  constructor(
    private readonly mfa: MfaService,
    private readonly users: UsersService,
  ) {}

  /** Owners only: require a second factor of everyone (they enrol at their next sign-in). */
  @Put('mfa-policy')
  @SkipAudit()
  @RequiresMfa()
  @CheckPolicies((ability) => ability.can('manage', 'all'))
  async setPolicy(@Body() dto: MfaPolicyDto, @CurrentUser() actor: AuthUser, @Req() req: Request) {
    await this.mfa.setRequiredForAll(dto.requiredForAll, actor, auditContext(req));
    return { requiredForAll: await this.mfa.requiredForAll() };
  }

  /** Sets a temporary password the user must change at their next sign-in. */
  @Post('users/:id/password')
  @HttpCode(200)
  @Audit('user.password-reset', 'User')
  @RequiresMfa()
  @CheckPolicies((ability) => ability.can('update', 'User'))
  async resetPassword(
    @Param('id', uuid) id: string,
    @Body() dto: ResetPasswordDto,
    @CurrentAbility() ability: AppAbility,
    @CurrentUser() actor: AuthUser,
  ) {
    return toUserView(await this.users.resetPassword(id, dto.password, ability, actor.id));
  }
}
