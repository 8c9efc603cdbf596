import { Client } from 'pg';
import { decrypt, DecryptionError } from './envelope';
import { createKeyFile, describeKeySource, keyFilePath, type LoadedKeyring } from './keyring';
import { countEnvelopes, type Query } from './sealed-columns';

/** A master key problem found at start: Keyward stops with this message (exit code 78). */
export class MasterKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MasterKeyError';
  }
}

async function withClient<T>(databaseUrl: string, work: (query: Query) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: databaseUrl, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    return await work(async <R>(sql: string, params?: unknown[]) => (await client.query(sql, params)).rows as R[]);
  } finally {
    await client.end();
  }
}

/**
 * Checks the master keys against what the database holds before anything else touches it:
 * with no key at all, a key file is created only when nothing is sealed yet (a new key beside
 * existing data could open none of it); with keys, the server's root secret must open and every
 * master key version an envelope names must be configured. `where` names the database for the
 * message ("embedded PostgreSQL in …" or "DATABASE_URL").
 */
export async function establishKeyring(
  loaded: LoadedKeyring | null,
  dataDir: string,
  databaseUrl: string,
  where: string,
): Promise<LoadedKeyring> {
  return withClient(databaseUrl, async (query) => {
    const [{ exists }] = await query<{ exists: boolean }>(`SELECT to_regclass('app_secrets') IS NOT NULL AS exists`);
    const [root] = exists
      ? await query<{ envelope: Buffer }>(`SELECT envelope FROM app_secrets WHERE name = 'root'`)
      : [];

    if (!loaded) {
      if (root) {
        throw new MasterKeyError(
          `no master key: KEYWARD_MASTER_KEYS is not set and ${keyFilePath(dataDir)} does not exist, but the database ` +
            `(${where}) already holds data sealed with a master key. Put the master.keys file from your backup back ` +
            `in ${dataDir} (chmod 600), or set KEYWARD_MASTER_KEYS to the keys this database was sealed with. ` +
            'Keyward does not generate a new key beside existing data: it could not open any of it.',
        );
      }
      return createKeyFile(dataDir);
    }

    const source = describeKeySource(loaded);
    if (root) {
      try {
        decrypt(loaded.keyring, root.envelope, 'app_secret:root').fill(0);
      } catch (error) {
        if (!(error instanceof DecryptionError)) throw error;
        throw new MasterKeyError(
          `the master keys in ${source} do not open this database (${where}): ${error.message.replace(/^Cannot decrypt secret: /, '')}. ` +
            `Set the master keys this database was sealed with (from your backup) in ${source}.`,
        );
      }
    }
    const configured = new Set(loaded.keyring.versions());
    const missing = (await countEnvelopes(query)).filter((c) => !configured.has(c.version));
    if (missing.length > 0) {
      const list = missing.map((m) => `${m.count} in ${m.table}.${m.column} use version ${m.version}`).join(', ');
      throw new MasterKeyError(
        `${source} lacks master key versions the database still uses (${list}). Add those versions back ` +
          `(from your backup) to ${source}; retire a version only with \`keyward master-key retire\` after \`rewrap\`.`,
      );
    }
    return loaded;
  });
}
