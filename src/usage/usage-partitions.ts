import { Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { scheduleLockedJob } from '../database/scheduled-job';

const MONTHS_AHEAD = 2;
const HOUR_MS = 3_600_000;

const monthStart = (year: number, month: number) => new Date(Date.UTC(year, month, 1));
export const partitionName = (start: Date) =>
  `usage_events_${start.getUTCFullYear()}_${String(start.getUTCMonth() + 1).padStart(2, '0')}`;

/**
 * `usage_events` is partitioned by month (docs/architecture.md, Data), so that old months can be
 * detached or dropped whole and reports on recent ones touch little. This keeps the partitions
 * of this month and the next two in place, at start and hourly. Rows that arrived before their
 * month had a partition sit in the DEFAULT partition; creating the month moves them over in the
 * same transaction, because PostgreSQL refuses a new partition whose range the default holds.
 */
@Injectable()
export class UsagePartitions implements OnApplicationBootstrap {
  private readonly logger = new Logger('UsagePartitions');

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly registry: SchedulerRegistry,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    await this.ensure().catch((error: Error) => this.logger.warn(`Partitions not prepared: ${error.message}`));
    scheduleLockedJob(this.registry, this.dataSource, 'usage-partitions', HOUR_MS, async () => {
      await this.ensure();
    });
  }

  /** Creates the missing monthly partitions from `now`'s month on; returns the ones it made. */
  async ensure(now: Date = new Date()): Promise<string[]> {
    const made: string[] = [];
    for (let i = 0; i <= MONTHS_AHEAD; i++) {
      const from = monthStart(now.getUTCFullYear(), now.getUTCMonth() + i);
      const to = monthStart(from.getUTCFullYear(), from.getUTCMonth() + 1);
      if (await this.create(partitionName(from), from, to)) made.push(partitionName(from));
    }
    if (made.length > 0) this.logger.log(`Usage partitions created: ${made.join(', ')}`);
    return made;
  }

  private async create(name: string, from: Date, to: Date): Promise<boolean> {
    const [{ exists }] = await this.dataSource.query<{ exists: boolean }[]>(
      `SELECT to_regclass($1) IS NOT NULL AS exists`,
      [name],
    );
    if (exists) return false;
    await this.dataSource.transaction(async (manager) => {
      // The name is built from digits only (partitionName), so it is safe to put into SQL.
      await manager.query(`CREATE TABLE ${name} (LIKE usage_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`);
      await manager.query(
        `WITH moved AS (DELETE FROM usage_events_default WHERE "timestamp" >= $1 AND "timestamp" < $2 RETURNING *)
         INSERT INTO ${name} SELECT * FROM moved`,
        [from, to],
      );
      await manager.query(
        `ALTER TABLE usage_events ATTACH PARTITION ${name} FOR VALUES FROM ('${from.toISOString()}') TO ('${to.toISOString()}')`,
      );
    });
    return true;
  }
}
