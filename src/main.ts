import 'reflect-metadata';
import { SetupService } from './auth/setup.service';
import { createApp, prepareRuntime } from './bootstrap';
import { ConfigError, loadConfig } from './config/config';
import { ShutdownService } from './lifecycle/shutdown.service';
import { PluginConflictError } from './plugin-system/plugin-loader';
import { KeyringError } from './crypto/keyring';
import { MasterKeyError } from './crypto/master-key-check';

const write = (line: string) => process.stdout.write(`${line}\n`);

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(78); // EX_CONFIG
    }
    throw error;
  }

  let prepared;
  try {
    prepared = await prepareRuntime(config);
  } catch (error) {
    if (error instanceof PluginConflictError || error instanceof KeyringError || error instanceof MasterKeyError) {
      process.stderr.write(`Keyward cannot start: ${error.message}\n`);
      process.exit(78);
    }
    throw error;
  }
  const { runtime, embedded, announcements } = prepared;
  let app: Awaited<ReturnType<typeof createApp>> | undefined;

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    write(`Keyward: ${signal} received, shutting down...`);
    // The grace for calls in flight, plus time to flush and close; past it the exit is forced.
    const force = setTimeout(() => process.exit(1), config.durability.shutdownGraceMs + 15_000);
    force.unref();
    try {
      // Drain first (stop accepting, finish calls, flush usage), then let Nest close the modules.
      await app?.get(ShutdownService).shutdown();
      await app?.close();
    } finally {
      await embedded?.stop();
      clearTimeout(force);
      process.exit(0);
    }
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => void shutdown(signal));

  try {
    app = await createApp(runtime);
    await app.listen(config.port, config.host);
  } catch (error) {
    await app?.close().catch(() => undefined);
    await embedded?.stop();
    throw error;
  }

  const firstOwner = await app.get(SetupService).prepareFirstOwner();
  for (const line of announcements) write(`Keyward: ${line}`);
  write(`Keyward ${runtime.info.version} is ready: open ${config.publicUrl}`);
  write(
    `  database: ${runtime.info.databaseMode === 'embedded' ? `embedded PostgreSQL in ${config.dataDir}` : 'DATABASE_URL'}`,
  );
  if (firstOwner.kind === 'created-from-environment') {
    write(`  created the first owner ${firstOwner.email} from KEYWARD_ADMIN_EMAIL`);
  } else if (firstOwner.kind === 'setup-link') {
    write(`  no user exists yet: create the first owner at ${firstOwner.url}`);
    write(`  (this link works once and expires ${firstOwner.expiresAt.toISOString()})`);
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`Keyward failed to start: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
