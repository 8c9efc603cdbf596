import { Global, Module } from '@nestjs/common';
import { KeysModule } from '../keys/keys.module';
import { UsageReportsService } from './usage-reports.service';
import { UsageTrendsService } from './usage-trends.service';
import { UsagePartitions } from './usage-partitions';
import { UsageRecorder } from './usage-recorder';
import { UsageAdminController } from './usage.admin.controller';
import { UsageController } from './usage.controller';

/** Global: the gateway records usage, the key vault and reports read it. */
@Global()
@Module({
  imports: [KeysModule],
  controllers: [UsageController, UsageAdminController],
  providers: [UsageRecorder, UsageReportsService, UsageTrendsService, UsagePartitions],
  exports: [UsageRecorder, UsageReportsService, UsageTrendsService],
})
export class UsageModule {}
