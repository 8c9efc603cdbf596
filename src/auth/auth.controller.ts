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

@Controller('api/auth')
export class AuthController {
  constructor(
    private readonly auth: AuthService,
    private readonly users: UsersService,
  ) {}

  /** Email + password in, a short-lived bearer token out (for scripts and CI). */
  @Post('token')
  @HttpCode(200)
  @Public()
  @SkipAudit()
  @UseGuards(SignInThrottlerGuard)
  async token(@Body() body: TokenRequestDto, @Req() req: Request) {
    const user = await this.auth.signIn(body.email, body.password, auditContext(req), 'api');
    return this.auth.issueAccessToken(user);
  }

  @Get('me')
  @CheckPolicies(() => true)
  async me(@CurrentUser() user: AuthUser) {
    return toUserView(await this.users.get(user.id));
  }
}
