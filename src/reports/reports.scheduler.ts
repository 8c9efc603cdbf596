import { Inject, Injectable, OnApplicationBootstrap } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { KEYWARD_CONFIG } from '../config/config.constants';
import type { KeywardConfig } from '../config/config';
import { scheduleLockedJob } from '../database/scheduled-job';
import { addDays } from '../usage/usage-math';
import { dailyPeriod, monthlyPeriod } from './report-data';
import { ReportsService } from './reports.service';

/**
 * Makes yesterday's daily report and last month's monthly report, once across instances (an
 * advisory lock, and a unique index behind it), `delayMinutes` after the period ends so the
 * last usage batches are in. A period missed while Keyward was down is made at the next start.
 */
@Injectable()
export class ReportsScheduler implements OnApplicationBootstrap {
  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly registry: SchedulerRegistry,
    private readonly reports: ReportsService,
    @Inject(KEYWARD_CONFIG) private readonly config: KeywardConfig,
  ) {}

  onApplicationBootstrap(): void {
    if (!this.config.reports.enabled) return;
    scheduleLockedJob(
      this.registry,
      this.dataSource,
      'usage-reports',
      this.config.schedulerIntervalSeconds * 1000,
      async () => {
        await this.runDue();
      },
    );
  }

  /** Makes the scheduled reports that are due and missing; returns what it made. */
  async runDue(now: Date = new Date()): Promise<string[]> {
    const settled = new Date(now.getTime() - this.config.reports.delayMinutes * 60_000);
    const due = [
      { kind: 'daily' as const, period: dailyPeriod(addDays(dailyPeriod(settled).start, -1)) },
      { kind: 'monthly' as const, period: monthlyPeriod(addDays(monthlyPeriod(settled).start, -1)) },
    ];
    const made: string[] = [];
    for (const { kind, period } of due) {
      if (await this.reports.scheduledExists(kind, period.start)) continue;
      const report = await this.reports.generate(period, 'schedule');
      if (report) made.push(report.id);
    }
    return made;
  }
}
