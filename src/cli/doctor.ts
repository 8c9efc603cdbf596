import Redis from 'ioredis';
import * as semver from 'semver';
import { loadProviderPlugins } from '../bootstrap';
import { packageVersion } from '../common/paths';
import { ConfigError, loadConfig, type KeywardConfig } from '../config/config';
import { decrypt } from '../crypto/envelope';
import { describeKeySource, readKeyring, type LoadedKeyring } from '../crypto/keyring';
import { countEnvelopes } from '../crypto/sealed-columns';
import { MIGRATIONS } from '../database/data-source-options';
import { openDatabase, type Output } from './context';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { projectRoot } from '../common/paths';

type Status = 'ok' | 'warn' | 'fail';

interface Finding {
  area: string;
  status: Status;
  what: string;
  fix?: string;
}

const MARK: Record<Status, string> = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL' };

/**
 * `doctor`: checks what Keyward needs, in the order it needs it, and says for each problem how
 * to fix it. Exit 1 when something would stop Keyward or lose data; warnings alone exit 0.
 */
export async function doctor(env: NodeJS.ProcessEnv, out: Output): Promise<boolean> {
  const findings: Finding[] = [];
  const add = (f: Finding) => {
    findings.push(f);
    out.line(`[${MARK[f.status]}] ${f.area}: ${f.what}${f.fix ? `\n         fix: ${f.fix}` : ''}`);
  };

  const engines = (
    JSON.parse(readFileSync(path.join(projectRoot(), 'package.json'), 'utf8')) as { engines: { node: string } }
  ).engines.node;
  add(
    semver.satisfies(process.version, engines)
      ? {
          area: 'node',
          status: 'ok',
          what: `Node ${process.version} (Keyward ${packageVersion()} supports ${engines})`,
        }
      : {
          area: 'node',
          status: 'warn',
          what: `Node ${process.version} is outside what the dependencies support (${engines})`,
          fix: 'install Node 22 LTS (22.13+) or 24 LTS (24.11+)',
        },
  );

  let config: KeywardConfig;
  try {
    config = loadConfig(env);
    add({ area: 'configuration', status: 'ok', what: 'every variable is valid' });
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    for (const problem of error.problems) {
      add({ area: 'configuration', status: 'fail', what: problem, fix: 'see the configuration table in README.md' });
    }
    return false;
  }

  let keys: LoadedKeyring | null = null;
  try {
    keys = await readKeyring(config.masterKeys, config.dataDir);
    if (keys) {
      add({
        area: 'master keys',
        status: 'ok',
        what: `${keys.keyring.versions().length} version(s) (${keys.keyring.versions().join(', ')}) from ${describeKeySource(keys)}; new data is sealed with version ${keys.keyring.newest().version}`,
      });
      if (keys.source === 'file') {
        add({
          area: 'master keys',
          status: 'warn',
          what: `kept in a file beside the data (${keys.file})`,
          fix: 'for production, set KEYWARD_MASTER_KEYS from a secret store, and back the keys up apart from the database',
        });
      }
    } else {
      add({
        area: 'master keys',
        status: 'warn',
        what: `none: KEYWARD_MASTER_KEYS is unset and ${path.join(config.dataDir, 'master.keys')} does not exist`,
        fix: 'fine for a first start (Keyward creates the file); otherwise restore master.keys from your backup',
      });
    }
  } catch (error) {
    add({ area: 'master keys', status: 'fail', what: (error as Error).message });
  }

  try {
    const plugins = loadProviderPlugins(config);
    add({
      area: 'plugins',
      status: 'ok',
      what: `loaded ${plugins.loaded.map((p) => `${p.manifest.id}@${p.manifest.version}`).join(', ') || 'none'}`,
    });
    for (const f of plugins.failed) {
      add({
        area: 'plugins',
        status: 'warn',
        what: `${f.id} (${f.source}) did not load: ${f.reason}`,
        fix: f.builtIn ? 'rebuild (npm run build)' : 'fix or remove it from KEYWARD_PLUGINS',
      });
    }
  } catch (error) {
    add({ area: 'plugins', status: 'fail', what: (error as Error).message });
  }

  await checkRedis(config, add);
  await checkDatabase(config, keys, out, add);

  const failed = findings.filter((f) => f.status === 'fail').length;
  const warned = findings.filter((f) => f.status === 'warn').length;
  out.line(failed ? `${failed} problem(s) to fix, ${warned} warning(s).` : `No problems found (${warned} warning(s)).`);
  return failed === 0;
}

async function checkRedis(config: KeywardConfig, add: (f: Finding) => void): Promise<void> {
  if (!config.redisUrl) {
    add({
      area: 'redis',
      status: 'ok',
      what: 'REDIS_URL unset: per-token rate limits are counted in each instance (fine for one instance)',
    });
    return;
  }
  const redis = new Redis(config.redisUrl, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    connectTimeout: 2000,
    retryStrategy: () => null,
  });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    const started = Date.now();
    await redis.ping();
    add({ area: 'redis', status: 'ok', what: `${new URL(config.redisUrl).host} answers (${Date.now() - started} ms)` });
  } catch (error) {
    add({
      area: 'redis',
      status: 'warn',
      what: `${new URL(config.redisUrl).host} does not answer: ${(error as Error).message}`,
      fix: 'start Redis or fix REDIS_URL; meanwhile each instance counts rate limits in memory',
    });
  } finally {
    redis.disconnect();
  }
}

async function checkDatabase(
  config: KeywardConfig,
  keys: LoadedKeyring | null,
  out: Output,
  add: (f: Finding) => void,
): Promise<void> {
  if (!config.databaseUrl && !existsSync(path.join(config.dataDir, 'postgres', 'PG_VERSION'))) {
    add({
      area: 'database',
      status: keys ? 'warn' : 'ok',
      what: `no embedded database in ${config.dataDir} yet (Keyward creates it at its first start)`,
      fix: keys
        ? 'if Keyward ran before, set KEYWARD_DATA_DIR to its data folder, or DATABASE_URL to its server'
        : undefined,
    });
    return;
  }
  let db;
  try {
    db = await openDatabase(config, out);
  } catch (error) {
    add({
      area: 'database',
      status: 'fail',
      what: (error as Error).message,
      fix: config.databaseUrl
        ? 'check that PostgreSQL runs, and the host, user, password and database in DATABASE_URL'
        : `check the permissions of ${config.dataDir} and the embedded PostgreSQL log (LOG_LEVEL=debug npm start)`,
    });
    return;
  }
  try {
    const q = (sql: string, params?: unknown[]) => db.dataSource.query(sql, params);
    const [{ server_version_num: num, server_version: version }] = await q(
      `SELECT current_setting('server_version_num') AS server_version_num, current_setting('server_version') AS server_version`,
    );
    add(
      Number(num) >= 130000
        ? { area: 'database', status: 'ok', what: `PostgreSQL ${version} (${db.where})` }
        : {
            area: 'database',
            status: 'fail',
            what: `PostgreSQL ${version} is too old`,
            fix: 'use PostgreSQL 13 or newer',
          },
    );
    const [{ exists }] = await q(`SELECT to_regclass('migrations') IS NOT NULL AS exists`);
    const applied = exists ? ((await q(`SELECT name FROM migrations`)) as { name: string }[]).map((m) => m.name) : [];
    const pending = MIGRATIONS.map((m) => m.name).filter((n) => !applied.includes(n));
    const unknown = applied.filter((n) => !MIGRATIONS.some((m) => m.name === n));
    if (unknown.length > 0) {
      add({
        area: 'database',
        status: 'fail',
        what: `migrations from a newer Keyward are applied: ${unknown.join(', ')}`,
        fix: 'run the Keyward version that made them (or newer)',
      });
    } else {
      add({
        area: 'database',
        status: 'ok',
        what: pending.length ? `${pending.length} migration(s) to apply at the next start` : 'schema up to date',
      });
    }
    if (!exists) return;

    const [root] = (await q(`SELECT envelope FROM app_secrets WHERE name = 'root'`)) as { envelope: Buffer }[];
    if (!root) {
      add({ area: 'master keys', status: 'ok', what: 'nothing sealed yet (Keyward has not started on this database)' });
      return;
    }
    if (!keys) {
      add({
        area: 'master keys',
        status: 'fail',
        what: 'the database holds sealed data but no master key is configured: Keyward will refuse to start',
        fix: `restore master.keys into ${config.dataDir} or set KEYWARD_MASTER_KEYS`,
      });
      return;
    }
    try {
      decrypt(keys.keyring, root.envelope, 'app_secret:root').fill(0);
      add({ area: 'master keys', status: 'ok', what: 'they open this database' });
    } catch (error) {
      add({
        area: 'master keys',
        status: 'fail',
        what: `they do not open this database: ${(error as Error).message}`,
        fix: `set the master keys this database was sealed with in ${describeKeySource(keys)}`,
      });
      return;
    }
    const counts = await countEnvelopes(q as never);
    const configured = keys.keyring.versions();
    const newest = keys.keyring.newest().version;
    for (const v of new Set(counts.map((c) => c.version))) {
      if (!configured.includes(v)) {
        add({
          area: 'master keys',
          status: 'fail',
          what: `envelopes sealed with version ${v} exist, but that version is not configured`,
          fix: `add version ${v} back to ${describeKeySource(keys)} from your backup`,
        });
      }
    }
    const old = counts.filter((c) => c.version !== newest).reduce((n, c) => n + c.count, 0);
    if (old > 0) {
      add({
        area: 'master keys',
        status: 'warn',
        what: `${old} envelope(s) still sealed with older versions`,
        fix: 'keyward master-key rewrap',
      });
    }
    for (const v of configured.filter((v) => v !== newest && !counts.some((c) => c.version === v))) {
      add({
        area: 'master keys',
        status: 'warn',
        what: `version ${v} is configured but nothing uses it`,
        fix: `keyward master-key retire ${v}`,
      });
    }
    for (const c of counts.filter((c) => !c.known)) {
      add({
        area: 'master keys',
        status: 'warn',
        what: `${c.table}.${c.column} holds envelopes that master-key rewrap does not know`,
        fix: 'list the column in src/crypto/sealed-columns.ts',
      });
    }
  } finally {
    await db.close();
  }
}
