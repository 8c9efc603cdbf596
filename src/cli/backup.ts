import { createCipheriv, createDecipheriv, hkdfSync, randomBytes, scryptSync } from 'node:crypto';
import { createReadStream, createWriteStream, promises as fs } from 'node:fs';
import { createInterface } from 'node:readline';
import { pipeline } from 'node:stream/promises';
import { PassThrough, Readable } from 'node:stream';
import { createGunzip, createGzip } from 'node:zlib';
import type { QueryRunner } from 'typeorm';
import { packageVersion } from '../common/paths';
import type { KeywardConfig } from '../config/config';
import { decrypt, DecryptionError } from '../crypto/envelope';
import { describeKeySource, type Keyring } from '../crypto/keyring';
import { countEnvelopes, quoteIdent } from '../crypto/sealed-columns';
import { MIGRATIONS } from '../database/data-source-options';
import { runMigrationsLocked } from '../database/migrate';
import { CliError, cliKeyring, openDatabase, type Database, type Output } from './context';

/*
 * A backup archive:
 *
 *   "KWBACKUP" | header length u32 BE | header (JSON, utf8) | AES-256-GCM ciphertext | tag (16)
 *
 * The header says how the archive key is made (HKDF from a named master key version, or scrypt
 * from a passphrase), the nonce, the Keyward version, the migrations and the row counts; it is
 * authenticated as the AAD, so it cannot be edited. The plaintext is gzip'd lines: per table a
 * `{"table": …, "columns": […]}` line, then its rows as PostgreSQL's own `row_to_json` text (never
 * parsed in JavaScript, so numerics, timestamps and bytea come back exactly).
 *
 * Provider keys and other secrets stay inside as the envelopes the database holds: a restore
 * needs the same master keys as well as the archive key.
 */

const MAGIC = Buffer.from('KWBACKUP', 'ascii');
const FORMAT = 1;
const TAG_LENGTH = 16;
const SCRYPT = { N: 2 ** 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };
const FETCH = 2000;
const INSERT_BATCH = 1000;

type Kdf =
  | { type: 'master-key'; version: number; salt: string }
  | { type: 'scrypt'; N: number; r: number; p: number; salt: string };

interface TableInfo {
  name: string;
  rows: number;
  /** For partitioned tables: each partition and its bounds, recreated before the rows go in. */
  partitions?: { name: string; bound: string }[];
}

interface Header {
  format: number;
  keyward: string;
  createdAt: string;
  kdf: Kdf;
  nonce: string;
  migrations: string[];
}

/** The line that starts a table's rows (inside the encrypted part, like the rows). */
interface TableStart extends TableInfo {
  table: string;
  columns: string[];
}

function archiveKey(kdf: Kdf, keyring: Keyring | null, passphrase: string | undefined): Buffer {
  const salt = Buffer.from(kdf.salt, 'base64');
  if (kdf.type === 'scrypt') {
    if (!passphrase) throw new CliError('this archive is encrypted with a passphrase: give --passphrase');
    return scryptSync(passphrase.normalize('NFC'), salt, 32, { N: kdf.N, r: kdf.r, p: kdf.p, maxmem: SCRYPT.maxmem });
  }
  const master = keyring?.get(kdf.version);
  if (!master) {
    throw new CliError(
      `this archive is encrypted with master key version ${kdf.version}, which the configured master keys do not have`,
      78,
    );
  }
  return Buffer.from(hkdfSync('sha256', master, salt, 'keyward/backup', 32));
}

/** Tables of the schema in an order that satisfies foreign keys (parents before children). */
async function tablesInOrder(q: QueryRunner): Promise<string[]> {
  const tables = (
    await q.query(
      `SELECT c.relname AS name FROM pg_class c
        WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
          AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relname <> 'migrations'
        ORDER BY 1`,
    )
  ).map((r: { name: string }) => r.name) as string[];
  const edges = (await q.query(
    `SELECT c.conrelid::regclass::text AS child, c.confrelid::regclass::text AS parent
       FROM pg_constraint c WHERE c.contype = 'f' AND c.conrelid <> c.confrelid`,
  )) as { child: string; parent: string }[];
  const ordered: string[] = [];
  const visiting = new Set<string>();
  const visit = (table: string) => {
    if (ordered.includes(table) || visiting.has(table)) return;
    visiting.add(table);
    for (const e of edges) if (e.child === table && tables.includes(e.parent)) visit(e.parent);
    ordered.push(table);
  };
  for (const t of tables) visit(t);
  return ordered;
}

/** Columns a row can be inserted with (generated columns are computed again). */
async function insertableColumns(q: QueryRunner, table: string): Promise<string[]> {
  return (
    (await q.query(
      `SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
        ORDER BY attnum`,
      [quoteIdent(table)],
    )) as { attname: string }[]
  ).map((r) => r.attname);
}

async function readPassphrase(): Promise<string> {
  const fromEnv = process.env.KEYWARD_BACKUP_PASSPHRASE;
  if (fromEnv) return fromEnv;
  const rl = createInterface({ input: process.stdin });
  for await (const line of rl) {
    rl.close();
    if (line) return line;
  }
  throw new CliError('--passphrase: set KEYWARD_BACKUP_PASSPHRASE or give the passphrase on stdin');
}

export async function passphraseOption(use: boolean | undefined): Promise<string | undefined> {
  if (!use) return undefined;
  const passphrase = await readPassphrase();
  if (passphrase.length < 12) throw new CliError('the backup passphrase must be at least 12 characters');
  return passphrase;
}

/** `backup create <file>`: every table's rows, from one consistent snapshot. */
export async function createBackup(
  config: KeywardConfig,
  file: string,
  out: Output,
  options: { passphrase?: string },
): Promise<void> {
  const keys = await cliKeyring(config);
  const db = await openDatabase(config, out);
  const q = db.dataSource.createQueryRunner();
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    await q.connect();
    await q.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const migrations = ((await q.query('SELECT name FROM migrations ORDER BY id')) as { name: string }[]).map(
      (m) => m.name,
    );
    const tables: TableInfo[] = [];
    for (const name of await tablesInOrder(q)) {
      const [{ count }] = (await q.query(`SELECT count(*) AS count FROM ${quoteIdent(name)}`)) as { count: string }[];
      const partitions = (await q.query(
        `SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
           FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::regclass ORDER BY 1`,
        [quoteIdent(name)],
      )) as { name: string; bound: string }[];
      tables.push({ name, rows: Number(count), ...(partitions.length ? { partitions } : {}) });
    }

    const salt = randomBytes(16).toString('base64');
    const kdf: Kdf = options.passphrase
      ? { type: 'scrypt', N: SCRYPT.N, r: SCRYPT.r, p: SCRYPT.p, salt }
      : { type: 'master-key', version: keys.keyring.newest().version, salt };
    const nonce = randomBytes(12);
    const header: Header = {
      format: FORMAT,
      keyward: packageVersion(),
      createdAt: new Date().toISOString(),
      kdf,
      nonce: nonce.toString('base64'),
      migrations,
    };
    const headerBytes = Buffer.from(JSON.stringify(header), 'utf8');
    const key = archiveKey(kdf, keys.keyring, options.passphrase);
    const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_LENGTH });
    cipher.setAAD(headerBytes);
    key.fill(0);

    const length = Buffer.alloc(4);
    length.writeUInt32BE(headerBytes.length);
    const sink = createWriteStream(tmp, { mode: 0o600 });
    sink.write(Buffer.concat([MAGIC, length, headerBytes]));
    const gzip = createGzip();
    gzip.pipe(cipher);
    cipher.pipe(sink, { end: false });
    // The tag exists only once the cipher has seen everything: it goes last, then the file ends.
    const written = new Promise<void>((resolve, reject) => {
      for (const stream of [gzip, cipher, sink] as NodeJS.EventEmitter[]) stream.once('error', reject);
      cipher.once('end', () => sink.end(cipher.getAuthTag(), () => resolve()));
    });
    const write = (line: string) =>
      gzip.write(line + '\n') ? Promise.resolve() : new Promise<void>((resolve) => gzip.once('drain', resolve));

    for (const table of tables) {
      const columns = await insertableColumns(q, table.name);
      const start: TableStart = { table: table.name, columns, ...table };
      await write(JSON.stringify(start));
      const select = columns.map(quoteIdent).join(', ');
      await q.query(
        `DECLARE rows NO SCROLL CURSOR FOR SELECT row_to_json(r)::text AS j FROM (SELECT ${select} FROM ${quoteIdent(table.name)}) r`,
      );
      let done = 0;
      for (;;) {
        const batch = (await q.query(`FETCH ${FETCH} FROM rows`)) as { j: string }[];
        if (batch.length === 0) break;
        for (const { j } of batch) await write(j);
        done += batch.length;
        if (table.rows > 50_000 && done % 100_000 < FETCH) out.note(`${table.name}: ${done}/${table.rows}`);
      }
      await q.query('CLOSE rows');
      out.note(`${table.name}: ${table.rows} row(s)`);
    }
    gzip.end();
    await written;
    await q.query('COMMIT');
    await fs.rename(tmp, file);
    const total = tables.reduce((n, t) => n + t.rows, 0);
    out.line(
      `Backup written to ${file}: ${tables.length} tables, ${total} rows, encrypted with ` +
        (kdf.type === 'scrypt' ? 'the passphrase' : `a key derived from master key version ${kdf.version}`) +
        `. Restoring it needs the master keys in ${describeKeySource(keys)} too (the stored secrets stay sealed with them).`,
    );
  } catch (error) {
    await fs.rm(tmp, { force: true });
    throw error;
  } finally {
    await q.release();
    await db.close();
  }
}

async function readHeader(
  file: string,
): Promise<{ header: Header; headerBytes: Buffer; bodyStart: number; size: number }> {
  const handle = await fs.open(file, 'r').catch((error: Error) => {
    throw new CliError(`cannot open ${file}: ${error.message}`);
  });
  try {
    const { size } = await handle.stat();
    const start = Buffer.alloc(MAGIC.length + 4);
    await handle.read(start, 0, start.length, 0);
    if (!start.subarray(0, MAGIC.length).equals(MAGIC)) throw new CliError(`${file} is not a Keyward backup`);
    const headerLength = start.readUInt32BE(MAGIC.length);
    if (headerLength > 10 * 1024 * 1024 || start.length + headerLength + TAG_LENGTH > size) {
      throw new CliError(`${file} is truncated or not a Keyward backup`);
    }
    const headerBytes = Buffer.alloc(headerLength);
    await handle.read(headerBytes, 0, headerLength, start.length);
    const header = JSON.parse(headerBytes.toString('utf8')) as Header;
    if (header.format !== FORMAT)
      throw new CliError(`${file} has backup format ${header.format}; this Keyward reads ${FORMAT}`);
    return { header, headerBytes, bodyStart: start.length + headerLength, size };
  } finally {
    await handle.close();
  }
}

/** Refuses a database that holds anything; an empty one gets the schema first. */
async function prepareEmptyDatabase(db: Database): Promise<void> {
  const tables = (await db.dataSource.query(
    `SELECT c.relname AS name FROM pg_class c
      WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
        AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relname <> 'migrations'`,
  )) as { name: string }[];
  const filled: string[] = [];
  for (const { name } of tables) {
    const [{ any }] = (await db.dataSource.query(`SELECT EXISTS (SELECT 1 FROM ${quoteIdent(name)}) AS any`)) as {
      any: boolean;
    }[];
    if (any) filled.push(name);
  }
  if (filled.length > 0) {
    throw new CliError(
      `the database (${db.where}) is not empty (rows in ${filled.join(', ')}): a backup is restored only into an empty ` +
        'database. Create a new one (or use a new KEYWARD_DATA_DIR) and point Keyward at it.',
    );
  }
  await runMigrationsLocked(db.url);
}

/** `backup restore <file>`: into an empty database, whole or not at all. */
export async function restoreBackup(
  config: KeywardConfig,
  file: string,
  out: Output,
  options: { passphrase?: string },
): Promise<void> {
  const { header, headerBytes, bodyStart, size } = await readHeader(file);
  const keys = await cliKeyring(config);
  const code = MIGRATIONS.map((m) => m.name);
  if (
    header.migrations.join() !== code.slice(0, header.migrations.length).join() ||
    header.migrations.length !== code.length
  ) {
    throw new CliError(
      `${file} was made by Keyward ${header.keyward} with a different schema (${header.migrations.length} migrations; this ` +
        `version has ${code.length}): restore it with the Keyward version that made it, then upgrade`,
    );
  }
  const key = archiveKey(header.kdf, keys.keyring, options.passphrase);
  const tag = Buffer.alloc(TAG_LENGTH);
  const handle = await fs.open(file, 'r');
  await handle.read(tag, 0, TAG_LENGTH, size - TAG_LENGTH);
  await handle.close();
  const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(header.nonce, 'base64'), {
    authTagLength: TAG_LENGTH,
  });
  decipher.setAAD(headerBytes);
  decipher.setAuthTag(tag);
  key.fill(0);

  // A fresh data folder is a fine target: its embedded database is created for the restore.
  const db = await openDatabase(config, out, { create: true });
  const q = db.dataSource.createQueryRunner();
  try {
    await prepareEmptyDatabase(db);
    await q.connect();
    await q.query('BEGIN');
    const body = createReadStream(file, { start: bodyStart, end: size - TAG_LENGTH - 1 });
    const plain = new PassThrough();
    // Nothing is committed unless the tag checks out at the end (decipher.final in the pipeline).
    let streamFailed = false;
    const gunzip = createGunzip();
    const decrypted = pipeline(body, decipher, gunzip, plain);
    decrypted.catch(() => undefined);
    // Set in the same tick as the failure, before the error reaches the reader below.
    for (const stream of [decipher, gunzip] as NodeJS.EventEmitter[]) stream.once('error', () => (streamFailed = true));

    let table: string | undefined;
    let columns: string[] = [];
    let batch: string[] = [];
    const counts = new Map<string, number>();
    const tables: TableStart[] = [];
    const flush = async () => {
      if (!table || batch.length === 0) return;
      const list = columns.map(quoteIdent).join(', ');
      await q.query(
        `INSERT INTO ${quoteIdent(table)} (${list}) SELECT ${list} FROM json_populate_recordset(null::${quoteIdent(table)}, $1::json)`,
        [`[${batch.join(',')}]`],
      );
      counts.set(table, (counts.get(table) ?? 0) + batch.length);
      batch = [];
    };
    const authFailed = () =>
      new CliError(`${file} failed authentication: wrong passphrase or master key, or the file was altered`);
    try {
      for await (const line of createInterface({ input: plain as Readable, crlfDelay: Infinity })) {
        if (!line) continue;
        if (line.startsWith('{"table":')) {
          await flush();
          const start = JSON.parse(line) as TableStart;
          table = start.table;
          columns = start.columns;
          tables.push(start);
          for (const p of start.partitions ?? []) {
            const [{ exists }] = (await q.query(`SELECT to_regclass($1) IS NOT NULL AS exists`, [
              quoteIdent(p.name),
            ])) as {
              exists: boolean;
            }[];
            if (!exists)
              await q.query(`CREATE TABLE ${quoteIdent(p.name)} PARTITION OF ${quoteIdent(table)} ${p.bound}`);
          }
          continue;
        }
        batch.push(line);
        if (batch.length >= INSERT_BATCH) await flush();
      }
      await flush();
      await decrypted;
    } catch (error) {
      // Whatever broke first (gunzip on garbage, the GCM tag at the end), a bad archive is that.
      if (streamFailed) throw authFailed();
      body.destroy();
      throw error;
    }

    for (const t of tables) {
      if ((counts.get(t.name) ?? 0) !== t.rows) {
        throw new CliError(
          `${file}: ${t.name} should have ${t.rows} rows, the archive held ${counts.get(t.name) ?? 0}`,
        );
      }
    }
    await checkSealedWith(q, keys.keyring, describeKeySource(keys));
    await resetSequences(q);
    await q.query('COMMIT');
    const total = tables.reduce((n, t) => n + t.rows, 0);
    out.line(
      `Restored ${total} rows in ${tables.length} tables from ${file} (made ${header.createdAt}) into ${db.where}.`,
    );
  } catch (error) {
    await q.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    await q.release();
    await db.close();
  }
}

/** The restored data must open with the configured master keys, or the restore is undone. */
async function checkSealedWith(q: QueryRunner, keyring: Keyring, source: string): Promise<void> {
  const [root] = (await q.query(`SELECT envelope FROM app_secrets WHERE name = 'root'`)) as { envelope: Buffer }[];
  if (root) {
    try {
      decrypt(keyring, root.envelope, 'app_secret:root').fill(0);
    } catch (error) {
      if (!(error instanceof DecryptionError)) throw error;
      throw new CliError(
        `the backup's secrets do not open with the master keys in ${source} (${error.message}); nothing was restored. ` +
          'Restore with the master keys the backed-up Keyward used.',
        78,
      );
    }
  }
  const configured = new Set(keyring.versions());
  const missing = (await countEnvelopes((sql, params) => q.query(sql, params))).filter(
    (c) => !configured.has(c.version),
  );
  if (missing.length > 0) {
    throw new CliError(
      `the backup holds envelopes sealed with master key version(s) ${[...new Set(missing.map((m) => m.version))].join(', ')}, ` +
        `which ${source} lacks; nothing was restored`,
      78,
    );
  }
}

/** Sequences (serial columns) continue after the restored rows. */
async function resetSequences(q: QueryRunner): Promise<void> {
  const owned = (await q.query(
    `SELECT s.relname AS seq, t.relname AS tbl, a.attname AS col
       FROM pg_class s JOIN pg_depend d ON d.objid = s.oid AND d.deptype IN ('a', 'i')
       JOIN pg_class t ON t.oid = d.refobjid JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
      WHERE s.relkind = 'S' AND s.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
        AND t.relname <> 'migrations'`,
  )) as { seq: string; tbl: string; col: string }[];
  for (const o of owned) {
    await q.query(
      `SELECT setval($1::regclass, GREATEST((SELECT max(${quoteIdent(o.col)}) FROM ${quoteIdent(o.tbl)}), 1), (SELECT max(${quoteIdent(o.col)}) IS NOT NULL FROM ${quoteIdent(o.tbl)}))`,
      [quoteIdent(o.seq)],
    );
  }
}
