import { Body, Controller, Get, HttpCode, Post, Req, UseGuards } from '@nestjs/common';
import type { Request } from 'express';
import { auditContext } from '../audit/audit-context';
import { SkipAudit } from '../audit/audit.decorator';
import { UsersService } from './users/users.service';
import { toUserView } from './users/user.view';
import { AuthService } from './auth.service';
import type { AuthUser } from './auth.types';
import { CheckPolicies, CurrentUser, Public } from './decorators';
import { TokenRequestDto } from './dto/token-request.dto';
import { SignInThrottlerGuard } from './signin-throttler.guard';
import { MfaService } from './mfa/mfa.service';
import { ProblemException } from '../common/problem';

@Controller('api/auth')
export class AuthController {
  constructor(
    private readonly auth: AuthService,
    private readonly users: UsersService,
    private readonly mfa: MfaService,
  ) {}

  /** Email + password in, a short-lived bearer token out (for scripts and CI). */
  @Post('token')
  @HttpCode(200)
  @Public()
  @SkipAudit()
  @UseGuards(SignInThrottlerGuard)
  async token(@Body() body: TokenRequestDto, @Req() req: Request) {
    const context = auditContext(req);
    const user = await this.auth.signIn(body.email, body.password, context, 'api');
    if (user.mustChangePassword) {
      throw new ProblemException(
        403,
        'password-change-required',
        'Password change required',
        'An owner reset this password: sign in to the console and choose a new one first.',
      );
    }
    let mfaVerifiedAt: number | undefined;
    if (!body.mfaCode && (await this.mfa.isEnrolled(user.id))) {
      throw new ProblemException(
        401,
        'mfa-required',
        'Second factor required',
        'This account has a second factor: send mfaCode with the current code from the authenticator (or a recovery code).',
        { field: 'mfaCode' },
      );
    }
    if (body.mfaCode) {
      const actor = { ...context, actor: { id: user.id, email: user.email, role: user.role } };
      if (!(await this.mfa.verify(user, body.mfaCode, actor))) throw this.mfa.wrongCode();
      mfaVerifiedAt = Date.now();
    }
    return this.auth.issueAccessToken(user, { mfaVerifiedAt });
  }

  @Get('me')
  @CheckPolicies(() => true)
  async me(@CurrentUser() user: AuthUser) {
    return toUserView(await this.users.get(user.id));
  }
}
