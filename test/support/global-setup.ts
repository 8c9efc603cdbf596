import 'reflect-metadata';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { connect } from 'node:net';
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
    await database.start();
    // Tests create and drop databases: they need the superuser, not the app's role.
    serverUrl = database.adminUrl;
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
  process.env[TEST_ENV.redisUrl] = await findRedis();
  // The app under test must not pick the outer server up by accident: tests pass URLs explicitly.
  delete process.env.DATABASE_URL;
}

/**
 * The Redis tests need a Redis server. A fresh machine with only Node.js has none, so there they
 * are skipped with a note; in CI (CI=true), where the machine runs one, its absence fails the run.
 */
async function findRedis(): Promise<string> {
  const url = process.env.KEYWARD_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
  const { hostname, port } = new URL(url);
  const reachable = await new Promise<boolean>((resolve) => {
    const socket = connect({ host: hostname, port: Number(port || 6379), timeout: 500 });
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => (socket.destroy(), resolve(false)));
  });
  if (reachable) return url;
  if (process.env.CI) throw new Error(`CI needs Redis at ${url}: redis-server --daemonize yes --port 6379 --save ""`);
  process.stderr.write(`\nNo Redis at ${url}: the Redis rate-limiter tests are skipped (start one to run them).\n`);
  return '';
}
