import { Global, Module } from '@nestjs/common';
import { LimitsService } from './limits.service';

/** Global: the gateway reserves and settles, access tokens and usage reports charge budgets. */
@Global()
@Module({
  providers: [LimitsService],
  exports: [LimitsService],
})
export class LimitsModule {}
