import { Module } from '@nestjs/common';
import { APP_GUARD, APP_INTERCEPTOR } from '@nestjs/core';
import { JwtModule } from '@nestjs/jwt';
import { PassportModule } from '@nestjs/passport';
import { ThrottlerModule } from '@nestjs/throttler';
import type { KeywardConfig } from '../config/config';
import { KEYWARD_CONFIG } from '../config/config.constants';
import { AuthAdminController } from './auth.admin.controller';
import { AuthController } from './auth.controller';
import { AuthService } from './auth.service';
import { AuthenticationGuard } from './authentication.guard';
import { JwtAuthGuard } from './jwt-auth.guard';
import { JwtStrategy } from './jwt.strategy';
import { PoliciesGuard } from './policies.guard';
import { IpAllowlistGuard } from '../security/ip-allowlist.guard';
import { RedisThrottlerStorage } from '../security/redis-throttler-storage';
import { SessionService } from './session.service';
import { SetupService } from './setup.service';
import { SignInThrottlerGuard } from './signin-throttler.guard';
import { UsersAdminController } from './users/users.admin.controller';
import { UsersController } from './users/users.controller';
import { UsersService } from './users/users.service';
import { AccountAdminApiController, AccountController } from './account/account.controller';
import { AccountAdminController } from './account/account.admin.controller';
import { MfaInterceptor } from './mfa/mfa.interceptor';
import { MfaService } from './mfa/mfa.service';
import { OidcClient } from './oidc/oidc.client';
import { OidcController } from './oidc/oidc.controller';
import { OIDC_CLIENT, OidcGuard, OidcStrategy } from './oidc/oidc.strategy';
import { SecretsService } from '../crypto/secrets.service';

/**
 * Accounts, sign-in and permissions. Its two global guards run on every route: first
 * AuthenticationGuard (who), then PoliciesGuard (may they).
 */
@Module({
  imports: [
    PassportModule,
    // Keys are passed per call: they come from SecretsService, not from static options.
    JwtModule.register({}),
    ThrottlerModule.forRootAsync({
      inject: [KEYWARD_CONFIG],
      useFactory: (config: KeywardConfig) => ({
        throttlers: [{ name: 'signin', ttl: 60_000, limit: config.signInRateLimitPerMinute }],
        // Shared by every instance when Redis is configured, so the limit holds across them.
        storage: config.redisUrl ? new RedisThrottlerStorage(config.redisUrl) : undefined,
      }),
    }),
  ],
  controllers: [
    AuthController,
    AuthAdminController,
    UsersController,
    UsersAdminController,
    AccountController,
    AccountAdminApiController,
    AccountAdminController,
    OidcController,
  ],
  providers: [
    AuthService,
    UsersService,
    SessionService,
    SetupService,
    JwtStrategy,
    JwtAuthGuard,
    SignInThrottlerGuard,
    { provide: APP_GUARD, useClass: AuthenticationGuard },
    // Between "who" and "may they": a person outside their IP allowlist goes no further.
    { provide: APP_GUARD, useClass: IpAllowlistGuard },
    { provide: APP_GUARD, useClass: PoliciesGuard },
    MfaService,
    // Step-up on routes marked @RequiresMfa(), for every module.
    { provide: APP_INTERCEPTOR, useClass: MfaInterceptor },
    // Single sign-on exists only when configured: both factories return null otherwise, and
    // the 'oidc' passport strategy is never registered.
    {
      provide: OIDC_CLIENT,
      inject: [KEYWARD_CONFIG, SecretsService],
      useFactory: (config: KeywardConfig, secrets: SecretsService) =>
        config.oidc
          ? new OidcClient(config.oidc, config.publicUrl, secrets.derive('oidc-flow'), config.session.cookieSecure)
          : null,
    },
    {
      provide: OidcStrategy,
      inject: [OIDC_CLIENT, AuthService],
      useFactory: (client: OidcClient | null, auth: AuthService) => (client ? new OidcStrategy(client, auth) : null),
    },
    OidcGuard,
  ],
  exports: [UsersService, SetupService, SessionService, MfaService],
})
export class AuthModule {}
