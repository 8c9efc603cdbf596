import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Each usage record carries the id the instance gave it when it was recorded, so that writing it
 * again (a retried batch whose commit was unclear, a journal replayed after a crash) is skipped
 * rather than counted twice. The unique index includes "timestamp", the partition key, as
 * PostgreSQL requires of a partitioned table; a record keeps its timestamp when replayed. Rows
 * written before this migration have no id (NULLs never conflict).
 */
export class UsageRecordIds1764460000000 implements MigrationInterface {
  name = 'UsageRecordIds1764460000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE usage_events ADD COLUMN record_id uuid`);
    await q.query(`CREATE UNIQUE INDEX usage_events_record_id_idx ON usage_events (record_id, "timestamp")`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX usage_events_record_id_idx`);
    await q.query(`ALTER TABLE usage_events DROP COLUMN record_id`);
  }
}
