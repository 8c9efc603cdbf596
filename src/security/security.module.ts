import { Global, Inject, Module, OnModuleDestroy } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { InputGuard } from '../common/input-guard';
import { FAILED_TOKEN_THROTTLE, FailedTokenThrottle } from '../access-tokens/failed-token-throttle';
import type { KeywardConfig } from '../config/config';
import { KEYWARD_CONFIG } from '../config/config.constants';
import { IpAllowlistGuard } from './ip-allowlist.guard';
import { IpAllowlistService } from './ip-allowlist.service';
import { SecurityAdminController } from './security.admin.controller';
import { SecurityController } from './security.controller';
import { SecurityService } from './security.service';
import { SignInLockoutService } from './sign-in-lockout.service';

/**
 * Admin security: IP allowlists for people, per-account sign-in lockout, the failing-token
 * throttle for the gateway, and the Security page. Global, because sign-in (AuthModule) and the
 * gateway consult it.
 */
@Global()
@Module({
  controllers: [SecurityController, SecurityAdminController],
  providers: [
    // Bad input (NUL, lone surrogates, deep nesting) is refused before anything reads it.
    { provide: APP_GUARD, useClass: InputGuard },
    IpAllowlistService,
    IpAllowlistGuard,
    SignInLockoutService,
    SecurityService,
    {
      provide: FAILED_TOKEN_THROTTLE,
      inject: [KEYWARD_CONFIG],
      useFactory: (config: KeywardConfig) =>
        new FailedTokenThrottle({ limit: config.security.failedTokenLimit, redisUrl: config.redisUrl }),
    },
  ],
  exports: [IpAllowlistService, IpAllowlistGuard, SignInLockoutService, FAILED_TOKEN_THROTTLE],
})
export class SecurityModule implements OnModuleDestroy {
  constructor(@Inject(FAILED_TOKEN_THROTTLE) private readonly throttle: FailedTokenThrottle) {}

  onModuleDestroy(): Promise<void> {
    return this.throttle.close();
  }
}
