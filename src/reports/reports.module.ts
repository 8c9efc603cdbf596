import { Module } from '@nestjs/common';
import { ReportsAdminController } from './reports.admin.controller';
import { ReportsController } from './reports.controller';
import { ReportsScheduler } from './reports.scheduler';
import { ReportsService } from './reports.service';

/** Stored daily, monthly and on-demand usage reports, from the usage rollups. */
@Module({
  controllers: [ReportsController, ReportsAdminController],
  providers: [ReportsService, ReportsScheduler],
  exports: [ReportsService],
})
export class ReportsModule {}
