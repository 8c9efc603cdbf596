import { Inject, Injectable, OnApplicationBootstrap } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { KEYWARD_CONFIG } from '../config/config.constants';
import type { KeywardConfig } from '../config/config';
import { scheduleLockedJob } from '../database/scheduled-job';
import { KeysService } from '../keys/keys.service';
import { RotationService } from './rotation.service';

/** Due rotations, retirements of rotated-out secrets and usage counter resets, once per tick. */
@Injectable()
export class RotationScheduler implements OnApplicationBootstrap {
  constructor(
    private readonly registry: SchedulerRegistry,
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly rotation: RotationService,
    private readonly keys: KeysService,
    @Inject(KEYWARD_CONFIG) private readonly config: KeywardConfig,
  ) {}

  onApplicationBootstrap(): void {
    scheduleLockedJob(
      this.registry,
      this.dataSource,
      'key-maintenance',
      this.config.schedulerIntervalSeconds * 1000,
      () => this.runOnce(),
    );
  }

  /** One pass over everything due; also what tests and `keyward` operators can trigger. */
  async runOnce(now: Date = new Date()): Promise<void> {
    await this.keys.resetDueCounters(now);
    await this.rotation.retireDue(now);
    await this.rotation.rotateDue(now);
  }
}
