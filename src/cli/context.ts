import { existsSync, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { DataSource } from 'typeorm';
import { AuditService } from '../audit/audit.service';
import type { AuditContext } from '../audit/audit.types';
import { AuditCheckpointService } from '../audit/audit-checkpoints';
import { ConfigError, loadConfig, type KeywardConfig } from '../config/config';
import { describeKeySource, readKeyring, type LoadedKeyring } from '../crypto/keyring';
import { SecretsService } from '../crypto/secrets.service';
import { dataSourceOptions } from '../database/data-source-options';
import { EmbeddedDatabase } from '../database/embedded-database';

/** A refusal or failure the operator can act on: printed without a stack, then exit `code`. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly code = 1,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

export interface Output {
  /** A result line, on stdout. */
  line(text: string): void;
  /** A note about what the command is doing, on stderr (so stdout stays the result). */
  note(text: string): void;
}

export const terminal: Output = {
  line: (text) => process.stdout.write(`${text}\n`),
  note: (text) => process.stderr.write(`${text}\n`),
};

export function cliConfig(env: NodeJS.ProcessEnv = process.env): KeywardConfig {
  try {
    return loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) throw new CliError(error.message.replace('Keyward cannot start', 'keyward'), 78);
    throw error;
  }
}

export async function cliKeyring(config: KeywardConfig): Promise<LoadedKeyring> {
  const keys = await readKeyring(config.masterKeys, config.dataDir).catch((error: Error) => {
    throw new CliError(error.message, 78);
  });
  if (!keys) {
    throw new CliError(
      `no master key: KEYWARD_MASTER_KEYS is not set and ${path.join(config.dataDir, 'master.keys')} does not exist ` +
        '(set KEYWARD_DATA_DIR to the data folder Keyward runs with, or KEYWARD_MASTER_KEYS)',
      78,
    );
  }
  return keys;
}

// What embedded-database.ts uses for its server (the superuser and the database it creates).
const EMBEDDED_USER = 'keyward';
const EMBEDDED_DATABASE = 'keyward';

/**
 * The embedded server a running Keyward (or another command) owns on this data folder:
 * PostgreSQL's own lock file names its process and port (lines 1 and 4 of postmaster.pid).
 */
export async function runningEmbeddedServer(dataDir: string): Promise<{ pid: number; url: string } | null> {
  let lines: string[];
  try {
    lines = (await fs.readFile(path.join(dataDir, 'postgres', 'postmaster.pid'), 'utf8')).split('\n');
  } catch {
    return null;
  }
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || pid <= 0 || !Number.isInteger(port) || port <= 0) return null;
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return null; // a stale lock from a crash
  }
  const password = (await fs.readFile(path.join(dataDir, 'postgres.password'), 'utf8')).trim();
  return {
    pid,
    url: `postgres://${EMBEDDED_USER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${EMBEDDED_DATABASE}`,
  };
}

export interface Database {
  url: string;
  /** Names the database in messages: "DATABASE_URL" or the embedded data folder. */
  where: string;
  dataSource: DataSource;
  close(): Promise<void>;
}

/**
 * The database the app uses: DATABASE_URL, else the embedded one in KEYWARD_DATA_DIR — through
 * the running server when Keyward is up on that folder (two servers on one folder would corrupt
 * it), else started for the command and stopped after it.
 */
export async function openDatabase(
  config: KeywardConfig,
  out: Output,
  options: { create?: boolean } = {},
): Promise<Database> {
  let url = config.databaseUrl;
  let where = 'DATABASE_URL';
  let embedded: EmbeddedDatabase | undefined;
  if (!url) {
    const running = await runningEmbeddedServer(config.dataDir);
    if (running) {
      out.note(
        `Keyward's embedded PostgreSQL is running on ${config.dataDir} (process ${running.pid}); working through it.`,
      );
      url = running.url;
      where = `the running embedded PostgreSQL in ${config.dataDir}`;
    } else {
      if (!options.create && !existsSync(path.join(config.dataDir, 'postgres', 'PG_VERSION'))) {
        throw new CliError(
          `there is no embedded database in ${config.dataDir} (DATABASE_URL is not set): set KEYWARD_DATA_DIR to the ` +
            'folder Keyward runs with, or DATABASE_URL to its server',
        );
      }
      embedded = new EmbeddedDatabase(config.dataDir, { debug: () => undefined, warn: (m) => out.note(m) });
      try {
        url = await embedded.start();
      } catch (error) {
        throw new CliError(`cannot start the embedded database in ${config.dataDir}: ${(error as Error).message}`);
      }
      where = `embedded PostgreSQL in ${config.dataDir}`;
    }
  }
  const dataSource = new DataSource({ ...dataSourceOptions(url), extra: { max: 4, connectionTimeoutMillis: 10_000 } });
  try {
    await dataSource.initialize();
  } catch (error) {
    await embedded?.stop();
    throw new CliError(`cannot connect to the database (${where}): ${(error as Error).message}`);
  }
  return {
    url,
    where,
    dataSource,
    close: async () => {
      await dataSource.destroy().catch(() => undefined);
      await embedded?.stop();
    },
  };
}

/** The server secrets and the audit log over the CLI's own connection (no Nest application). */
export async function openVault(
  keys: LoadedKeyring,
  db: Database,
): Promise<{ secrets: SecretsService; audit: AuditService }> {
  const [{ exists }] = await db.dataSource.query<{ exists: boolean }[]>(
    `SELECT to_regclass('app_secrets') IS NOT NULL AND EXISTS (SELECT 1 FROM app_secrets WHERE name = 'root') AS exists`,
  );
  if (!exists) throw new CliError(`the database (${db.where}) has no Keyward data yet: start Keyward once first`);
  let secrets: SecretsService;
  try {
    secrets = await SecretsService.create(keys.keyring, db.dataSource);
  } catch (error) {
    throw new CliError(
      `the master keys in ${describeKeySource(keys)} do not open this database (${db.where}): ${(error as Error).message}`,
      78,
    );
  }
  // Verification compares the chain with the signed checkpoints, as the app's does.
  const checkpoints = new AuditCheckpointService(db.dataSource, secrets, loadConfig());
  return { secrets, audit: new AuditService(db.dataSource, secrets, checkpoints) };
}

/** Who the audit log names for a command run from the shell. */
export const CLI_CONTEXT: AuditContext = {
  actor: { id: null, email: 'keyward-cli', role: null },
  ip: null,
  userAgent: `keyward-cli (${process.env.USER ?? 'unknown user'})`,
};
