import { Logger } from '@nestjs/common';
import type { SchedulerRegistry } from '@nestjs/schedule';
import { createHash } from 'node:crypto';
import type { DataSource } from 'typeorm';

/** A stable 63-bit advisory lock id for a job name. */
function lockId(name: string): string {
  return BigInt.asIntN(
    64,
    BigInt('0x' + createHash('sha256').update(`keyward:${name}`).digest('hex').slice(0, 16)),
  ).toString();
}

/**
 * Runs `work` now and then, on one instance at a time: each run first takes a PostgreSQL
 * session advisory lock (try, never wait), so N instances sharing a database do the job once.
 * A run that is still going when the next tick comes is not started twice on this instance.
 */
export function scheduleLockedJob(
  registry: SchedulerRegistry,
  dataSource: DataSource,
  name: string,
  intervalMs: number,
  work: () => Promise<void>,
): void {
  const logger = new Logger('Scheduler');
  let running = false;
  const tick = async () => {
    if (running || !dataSource.isInitialized) return;
    running = true;
    const runner = dataSource.createQueryRunner();
    try {
      await runner.connect();
      const [{ locked }] = await runner.query(`SELECT pg_try_advisory_lock($1::bigint) AS locked`, [lockId(name)]);
      if (!locked) return;
      try {
        await work();
      } finally {
        await runner.query(`SELECT pg_advisory_unlock($1::bigint)`, [lockId(name)]);
      }
    } catch (error) {
      logger.error(`Job ${name} failed: ${error instanceof Error ? error.message : String(error)}`);
    } finally {
      running = false;
      await runner.release().catch(() => undefined);
    }
  };
  const timer = setInterval(() => void tick(), intervalMs);
  timer.unref();
  registry.addInterval(name, timer);
}
