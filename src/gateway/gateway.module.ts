import { Module } from '@nestjs/common';
import { AccessTokensModule } from '../access-tokens/access-tokens.module';
import { GatewayService } from './gateway.service';
import { KeyPool } from './key-pool';
import { UsageReportController } from './usage-report.controller';
import { UsageReportService } from './usage-report.service';
import { KeysModule } from '../keys/keys.module';

/** The gateway's handler is mounted by app.setup.ts ahead of Nest's router (see GatewayService). */
@Module({
  imports: [AccessTokensModule, KeysModule],
  controllers: [UsageReportController],
  providers: [KeyPool, GatewayService, UsageReportService],
  exports: [GatewayService, KeyPool],
})
export class GatewayModule {}
