import 'reflect-metadata';
import { DataSource } from 'typeorm';
import { dataSourceOptions } from './src/database/data-source-options';

/**
 * The DataSource for the TypeORM CLI (`npm run typeorm -- migration:run`, `migration:show`,
 * `migration:generate`). Keyward itself runs migrations at start; the CLI needs an explicit
 * server, so DATABASE_URL is required here (`npm start` prints the embedded one's URL).
 */
const url = process.env.DATABASE_URL;
if (!url) {
  throw new Error(
    'DATABASE_URL is not set: the TypeORM CLI needs the PostgreSQL URL to work on (npm start prints the embedded database URL at debug level).',
  );
}

export default new DataSource(dataSourceOptions(url));
