import { Module, OnModuleInit } from '@nestjs/common';
import { AuditService } from '../audit/audit.service';
import { KEYWARD_CONFIG } from '../config/config.constants';
import type { KeywardConfig } from '../config/config';
import { AccessTokensAdminController } from './access-tokens.admin.controller';
import { RATE_LIMITER } from './access-tokens.constants';
import { AccessTokensController } from './access-tokens.controller';
import { AccessTokensService } from './access-tokens.service';
import { createRateLimiter } from './rate-limiter';
import { TokenBudgets } from './token-budgets';

@Module({
  controllers: [AccessTokensController, AccessTokensAdminController],
  providers: [
    AccessTokensService,
    TokenBudgets,
    {
      provide: RATE_LIMITER,
      inject: [KEYWARD_CONFIG],
      useFactory: (config: KeywardConfig) =>
        createRateLimiter(config.redisUrl, { commandTimeoutMs: config.durability.redisTimeoutMs }),
    },
  ],
  exports: [AccessTokensService, RATE_LIMITER],
})
export class AccessTokensModule implements OnModuleInit {
  constructor(
    private readonly audit: AuditService,
    private readonly tokens: AccessTokensService,
  ) {}

  /** Audit entries about a token name it and show its masked hint. */
  onModuleInit(): void {
    this.audit.registerDescriber('AccessToken', (id) => this.tokens.describe(id));
  }
}
