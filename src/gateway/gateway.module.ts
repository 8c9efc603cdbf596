import { Module } from '@nestjs/common';
import { AccessTokensModule } from '../access-tokens/access-tokens.module';
import { KeysModule } from '../keys/keys.module';
import { Admission } from './admission';
import { Failover } from './failover';
import { GatewayService } from './gateway.service';
import { KeyPool } from './key-pool';
import { RefusalLog } from './refusal-log';
import { GatewayScope } from './scope';
import { UsageRecording } from './usage-record';
import { UsageReportController } from './usage-report.controller';
import { UsageReportService } from './usage-report.service';

/** The gateway's handler is mounted by app.setup.ts ahead of Nest's router (see GatewayService). */
@Module({
  imports: [AccessTokensModule, KeysModule],
  controllers: [UsageReportController],
  providers: [
    KeyPool,
    Admission,
    GatewayScope,
    Failover,
    UsageRecording,
    RefusalLog,
    GatewayService,
    UsageReportService,
  ],
  exports: [GatewayService, KeyPool],
})
export class GatewayModule {}
