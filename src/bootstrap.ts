import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import pino, { type DestinationStream, type Logger as Pino } from 'pino';
import { configureApp } from './app.setup';
import type { KeywardConfig } from './config/config';
import { readKeyring } from './crypto/keyring';
import { establishKeyring } from './crypto/master-key-check';
import { runMigrationsLocked } from './database/migrate';
import { EmbeddedDatabase } from './database/embedded-database';
import { packageVersion, projectRoot } from './common/paths';
import { loadPlugins, type PluginLoadResult } from './plugin-system/plugin-loader';
import * as path from 'node:path';
import type { KeywardRuntime } from './runtime';

export const KEYWARD_VERSION = packageVersion();

export interface Started {
  runtime: KeywardRuntime;
  embedded?: EmbeddedDatabase;
  /** What bootstrap announced, for main to print. */
  announcements: string[];
}

/**
 * Everything that must exist before the application module is built: the master keys, the
 * database (embedded unless DATABASE_URL is set) and, later, the provider plugins.
 */
export async function prepareRuntime(config: KeywardConfig, logStream?: DestinationStream): Promise<Started> {
  const log: Pino = pino({ level: config.logLevel, base: { context: 'Bootstrap' } }, logStream ?? process.stdout);
  const announcements: string[] = [];

  // Read (or refused) first, so a bad key file stops the start before anything else runs; a
  // missing one is created only after the database shows that nothing is sealed yet.
  const found = await readKeyring(config.masterKeys, config.dataDir);

  const plugins = loadProviderPlugins(config);
  // The registry logs each plugin once the logger is up; a failure is also printed at start.
  for (const f of plugins.failed) announcements.push(`provider plugin ${f.id} failed to load: ${f.reason}`);

  let embedded: EmbeddedDatabase | undefined;
  let databaseUrl = config.databaseUrl;
  if (!databaseUrl) {
    embedded = new EmbeddedDatabase(config.dataDir, {
      debug: (message) => log.debug({ component: 'embedded-postgres' }, message),
      warn: (message) => log.warn({ component: 'embedded-postgres' }, message),
    });
    const started = Date.now();
    databaseUrl = await embedded.start();
    log.info(`Embedded PostgreSQL ready in ${Date.now() - started} ms (data in ${embedded.clusterDir})`);
  }

  let keys;
  try {
    const where = embedded ? `embedded PostgreSQL in ${config.dataDir}` : 'DATABASE_URL';
    keys = await establishKeyring(found, config.dataDir, databaseUrl, where);
  } catch (error) {
    await embedded?.stop();
    throw error;
  }
  if (keys.createdFile) {
    announcements.push(
      `Generated a master key in ${keys.createdFile} (mode 0600). Back it up: without it the stored provider keys cannot be decrypted. For production, set KEYWARD_MASTER_KEYS instead.`,
    );
  }

  return {
    runtime: {
      config,
      keyring: keys.keyring,
      databaseUrl,
      logStream,
      plugins,
      info: {
        databaseMode: embedded ? 'embedded' : 'external',
        masterKeySource: keys.source,
        masterKeyVersion: keys.keyring.newest().version,
        version: KEYWARD_VERSION,
      },
    },
    embedded,
    announcements,
  };
}

/**
 * Built-in plugins from `plugins/` (their compiled code in `dist/plugins/` when Keyward runs
 * compiled), then those named in KEYWARD_PLUGINS.
 */
export function loadProviderPlugins(config: KeywardConfig): PluginLoadResult {
  const root = projectRoot();
  return loadPlugins({
    builtInDir: path.join(root, 'plugins'),
    builtInCodeDir: __filename.endsWith('.js') ? path.join(root, 'dist', 'plugins') : undefined,
    extra: config.plugins,
    keywardVersion: KEYWARD_VERSION,
  });
}

/** Builds the Nest application on a prepared runtime (used by main.ts and the e2e tests). */
export async function createApp(runtime: KeywardRuntime): Promise<NestExpressApplication> {
  // Imported here, not at the top: the module graph is evaluated only after plugins are loaded.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { AppModule } = require('./app.module') as typeof import('./app.module');
  // Before the module graph connects: providers (the root secret, caches) read migrated tables.
  await runMigrationsLocked(runtime.databaseUrl);
  const app = await NestFactory.create<NestExpressApplication>(AppModule.forRoot(runtime), {
    bodyParser: false,
    bufferLogs: true,
  });
  await configureApp(app, runtime);
  await app.init();
  return app;
}
