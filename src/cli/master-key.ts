import { Keyring, keyFilePath, writeKeyFile, type LoadedKeyring, describeKeySource } from '../crypto/keyring';
import { envelopeVersion, rewrap } from '../crypto/envelope';
import {
  countEnvelopes,
  envelopeVersionSql,
  isEnvelopeSql,
  quoteIdent,
  SEALED_COLUMNS,
  type SealedColumn,
} from '../crypto/sealed-columns';
import { CLI_CONTEXT, CliError, cliKeyring, openDatabase, openVault, type Database, type Output } from './context';
import type { KeywardConfig } from '../config/config';

const BATCH = 200;

/** Puts a changed keyring where it came from: the key file, or a value for the operator to set. */
async function saveKeyring(keys: LoadedKeyring, next: Keyring, out: Output): Promise<void> {
  if (keys.source === 'file') {
    await writeKeyFile(keys.file!, next);
    return;
  }
  out.line('KEYWARD_MASTER_KEYS is set in the environment, so nothing was written. Set it to:');
  out.line(`KEYWARD_MASTER_KEYS=${next.serialize()}`);
}

/** `master-key add`: a new newest version. */
export async function addMasterKey(config: KeywardConfig, out: Output): Promise<void> {
  const keys = await cliKeyring(config).catch((error: CliError) => {
    if (config.masterKeys) throw error;
    throw new CliError(
      `${keyFilePath(config.dataDir)} does not exist: start Keyward once to create it, or set KEYWARD_DATA_DIR to its data folder`,
      78,
    );
  });
  const next = keys.keyring.withNewVersion();
  const version = next.newest().version;
  await saveKeyring(keys, next, out);
  if (keys.source === 'file') out.line(`Added master key version ${version} to ${keys.file}.`);
  out.line(
    `Next: restart every Keyward instance with these keys (new secrets are then sealed with version ${version}, ` +
      'older versions stay readable), then run `keyward master-key rewrap`.',
  );
}

interface RewrapResult {
  column: string;
  rewrapped: number;
  failed: number;
}

async function rewrapColumn(db: Database, keyring: Keyring, sealed: SealedColumn, out: Output): Promise<RewrapResult> {
  const table = quoteIdent(sealed.table);
  const col = quoteIdent(sealed.column);
  const key = quoteIdent(sealed.key[0]);
  const newest = keyring.newest().version;
  const stale = `${col} IS NOT NULL AND ${isEnvelopeSql(col)} AND ${envelopeVersionSql(col)} <> ${newest}`;
  const [{ total }] = await db.dataSource.query<{ total: string }[]>(
    `SELECT count(*) AS total FROM ${table} WHERE ${stale}`,
  );
  const name = `${sealed.table}.${sealed.column}`;
  const result: RewrapResult = { column: name, rewrapped: 0, failed: 0 };
  if (Number(total) === 0) {
    out.line(`${name}: nothing to re-wrap`);
    return result;
  }
  let after = '';
  for (;;) {
    const rows = await db.dataSource.query<Record<string, unknown>[]>(
      `SELECT ${[...new Set([...sealed.key, ...sealed.rowColumns])].map(quoteIdent).join(', ')}, ${col} AS envelope
         FROM ${table} WHERE ${stale} AND ${key}::text > $1 ORDER BY ${key}::text LIMIT ${BATCH}`,
      [after],
    );
    if (rows.length === 0) break;
    for (const row of rows) {
      after = String(row[sealed.key[0]]);
      const envelope = row.envelope as Buffer;
      let next: Buffer;
      try {
        next = rewrap(keyring, envelope, sealed.aad(row));
      } catch (error) {
        result.failed++;
        out.note(`${name} ${after}: cannot re-wrap: ${(error as Error).message}`);
        continue;
      }
      // Only if the row still holds what was read: a secret rotated meanwhile is already current.
      await db.dataSource.query(`UPDATE ${table} SET ${col} = $1 WHERE ${key} = $2 AND ${col} = $3`, [
        next,
        row[sealed.key[0]],
        envelope,
      ]);
      result.rewrapped++;
    }
    out.line(`${name}: ${result.rewrapped + result.failed}/${total} re-wrapped to version ${newest}`);
  }
  return result;
}

/** `master-key rewrap`: every envelope's data key re-sealed with the newest master key. */
export async function rewrapAll(config: KeywardConfig, out: Output, options: { force?: boolean }): Promise<void> {
  const keys = await cliKeyring(config);
  const newest = keys.keyring.newest().version;
  const db = await openDatabase(config, out);
  try {
    const [root] = await db.dataSource.query<{ envelope: Buffer }[]>(
      `SELECT envelope FROM app_secrets WHERE name = 'root'`,
    );
    if (!root) throw new CliError(`the database (${db.where}) has no Keyward data yet: nothing to re-wrap`);
    // Every instance re-wraps the server secret to its newest key when it starts; still on an older
    // version, no instance has started with the new key, and the running ones could not open what
    // this command writes.
    const rootVersion = envelopeVersion(root.envelope);
    if (rootVersion < newest && !options.force) {
      throw new CliError(
        `no Keyward instance has started with master key version ${newest} yet (the server secret is still sealed ` +
          `with version ${rootVersion}). Restart every instance with the keys in ${describeKeySource(keys)} first — ` +
          'running instances only read versions they were started with — or pass --force if none is running.',
      );
    }
    const { audit } = await openVault(keys, db);
    const results: RewrapResult[] = [];
    for (const sealed of SEALED_COLUMNS) results.push(await rewrapColumn(db, keys.keyring, sealed, out));
    const left = (await countEnvelopes((sql, params) => db.dataSource.query(sql, params))).filter(
      (c) => c.version !== newest,
    );
    await audit.record(CLI_CONTEXT, {
      action: 'master-key.rewrapped',
      outcome: left.length === 0 ? 'success' : 'failure',
      details: {
        version: newest,
        columns: results,
        left: left.map((l) => `${l.table}.${l.column} v${l.version}: ${l.count}`),
      },
    });
    if (left.length > 0) {
      for (const l of left) {
        out.note(
          `${l.table}.${l.column}: ${l.count} envelope(s) still sealed with version ${l.version}` +
            (l.known ? '' : ' (a column this command does not know how to re-wrap)'),
        );
      }
      throw new CliError(
        'some envelopes were not re-wrapped (listed above); older master key versions are still needed',
      );
    }
    out.line(`Every envelope is sealed with master key version ${newest}. Older versions can now be retired.`);
  } finally {
    await db.close();
  }
}

/** `master-key retire <version>`: removes a version nothing uses any more. */
export async function retireMasterKey(config: KeywardConfig, version: number, out: Output): Promise<void> {
  const keys = await cliKeyring(config);
  let next: Keyring;
  try {
    next = keys.keyring.without(version);
  } catch (error) {
    throw new CliError(`cannot retire master key version ${version}: ${(error as Error).message}`);
  }
  const db = await openDatabase(config, out);
  try {
    const inUse = (await countEnvelopes((sql, params) => db.dataSource.query(sql, params))).filter(
      (c) => c.version === version,
    );
    if (inUse.length > 0) {
      const list = inUse.map((u) => `${u.count} in ${u.table}.${u.column}`).join(', ');
      throw new CliError(
        `master key version ${version} is still in use (${list}): run \`keyward master-key rewrap\` first`,
      );
    }
    const { audit } = await openVault(keys, db);
    await saveKeyring(keys, next, out);
    await audit.record(CLI_CONTEXT, {
      action: 'master-key.retired',
      outcome: 'success',
      details: { version, remaining: next.versions() },
    });
    if (keys.source === 'file') out.line(`Retired master key version ${version} from ${keys.file}.`);
    out.line(`Restart every Keyward instance so that none keeps version ${version} in memory.`);
  } finally {
    await db.close();
  }
}
