import 'reflect-metadata';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { DataSource } from 'typeorm';
import { dataSourceOptions } from '../../src/database/data-source-options';
import { EmbeddedDatabase } from '../../src/database/embedded-database';
import { databaseUrl, TEST_ENV, withAdminClient } from './test-database';

declare global {
  var __KEYWARD_EMBEDDED__: { database: EmbeddedDatabase; dataDir: string } | undefined;
}

/**
 * Starts the run's PostgreSQL (embedded, unless DATABASE_URL names a server) and builds the
 * template database with every migration applied — once per run, not once per file.
 */
export default async function globalSetup(): Promise<void> {
  const runId = `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
  let serverUrl = process.env.DATABASE_URL;
  if (!serverUrl) {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'keyward-test-'));
    const database = new EmbeddedDatabase(dataDir, { debug: () => undefined, warn: () => undefined });
    serverUrl = await database.start();
    globalThis.__KEYWARD_EMBEDDED__ = { database, dataDir };
  }

  const template = `kw_${runId}_template`;
  await withAdminClient(serverUrl, (client) => client.query(`CREATE DATABASE "${template}"`));
  const dataSource = new DataSource(dataSourceOptions(databaseUrl(serverUrl, template)));
  await dataSource.initialize();
  await dataSource.runMigrations();
  await dataSource.destroy();

  process.env[TEST_ENV.serverUrl] = serverUrl;
  process.env[TEST_ENV.template] = template;
  process.env[TEST_ENV.runId] = runId;
  // The app under test must not pick the outer server up by accident: tests pass URLs explicitly.
  delete process.env.DATABASE_URL;
}
