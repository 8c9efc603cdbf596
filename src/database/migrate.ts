import { DataSource } from 'typeorm';
import { dataSourceOptions } from './data-source-options';

// One lock id for "migrating this database", the same in every instance and in the CLI.
export const MIGRATION_LOCK = 0x6b776d696772; // "kwmigr"

/**
 * Runs the pending migrations under a PostgreSQL advisory lock, so that instances starting
 * together on a fresh database migrate one after the other: the first applies them, the others
 * wait, then find nothing left to do. (Unlocked, two concurrent `CREATE TABLE`s of the same name
 * collide in the catalog: duplicate key "pg_type_typname_nsp_index".)
 */
export async function runMigrationsLocked(databaseUrl: string): Promise<string[]> {
  const dataSource = new DataSource({ ...dataSourceOptions(databaseUrl), extra: { max: 2 } });
  await dataSource.initialize();
  const lock = dataSource.createQueryRunner();
  try {
    await lock.connect();
    await lock.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    try {
      return (await dataSource.runMigrations({ transaction: 'each' })).map((m) => m.name);
    } finally {
      await lock.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]);
    }
  } finally {
    await lock.release();
    await dataSource.destroy();
  }
}
