import { managementAad, secretAad } from '../keys/keys.service';

/** Runs one SQL statement and returns its rows (a TypeORM DataSource or EntityManager `query`). */
export type Query = <T = Record<string, unknown>>(sql: string, params?: unknown[]) => Promise<T[]>;

/**
 * A database column that holds envelopes (src/crypto/envelope.ts), and how to rebuild each row's
 * AAD. A feature that stores a sealed value adds its column here: `keyward master-key rewrap`
 * re-wraps exactly these, and `retire` and `doctor` also scan every other bytea column for
 * envelopes, so a column missing from this list is reported instead of silently left behind.
 */
export interface SealedColumn {
  table: string;
  column: string;
  /** Columns that identify a row (for the update) plus what the AAD needs. */
  rowColumns: string[];
  key: string[];
  aad(row: Record<string, unknown>): string;
}

export const SEALED_COLUMNS: SealedColumn[] = [
  {
    table: 'app_secrets',
    column: 'envelope',
    rowColumns: ['name'],
    key: ['name'],
    aad: (row) => `app_secret:${String(row.name)}`,
  },
  {
    table: 'api_keys',
    column: 'secret_ciphertext',
    rowColumns: ['id', 'provider', 'secret_version'],
    key: ['id'],
    aad: (row) => secretAad({ id: String(row.id), provider: String(row.provider) }, Number(row.secret_version)),
  },
  {
    table: 'api_keys',
    column: 'management_ciphertext',
    rowColumns: ['id', 'provider'],
    key: ['id'],
    aad: (row) => managementAad({ id: String(row.id), provider: String(row.provider) }),
  },
  {
    table: 'alert_channels',
    column: 'secret_ciphertext',
    rowColumns: ['id'],
    key: ['id'],
    aad: (row) => `alert_channel:${String(row.id)}`,
  },
  {
    table: 'mfa_factors',
    column: 'secret_envelope',
    rowColumns: ['id'],
    key: ['id'],
    aad: (row) => `mfa_factor:${String(row.id)}`,
  },
];

/** SQL for "this bytea is an envelope": magic "KW" and format 1 (see envelope.ts). */
export const isEnvelopeSql = (column: string) => `substring(${column} from 1 for 3) = '\\x4b5701'::bytea`;
/** SQL for an envelope's master key version (big-endian u32 after the 3-byte magic). */
export const envelopeVersionSql = (column: string) =>
  `(('x' || encode(substring(${column} from 4 for 4), 'hex'))::bit(32)::bigint)`;

export const quoteIdent = (name: string) => `"${name.replace(/"/g, '""')}"`;

export interface EnvelopeCount {
  table: string;
  column: string;
  version: number;
  count: number;
  /** False for a bytea column holding envelopes that SEALED_COLUMNS does not list. */
  known: boolean;
}

/**
 * How many envelopes each master key version seals, in every bytea column of the schema (not
 * only the known ones): what `retire` must see at zero before a version may go.
 */
export async function countEnvelopes(query: Query): Promise<EnvelopeCount[]> {
  const columns = await query<{ table_name: string; column_name: string }>(
    `SELECT c.table_name, c.column_name
       FROM information_schema.columns c
       JOIN pg_class t ON t.relname = c.table_name AND t.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
      WHERE c.table_schema = current_schema() AND c.data_type = 'bytea' AND NOT t.relispartition
      ORDER BY 1, 2`,
  );
  const out: EnvelopeCount[] = [];
  for (const { table_name: table, column_name: column } of columns) {
    const col = quoteIdent(column);
    const rows = await query<{ version: string; count: string }>(
      `SELECT ${envelopeVersionSql(col)} AS version, count(*) AS count
         FROM ${quoteIdent(table)} WHERE ${col} IS NOT NULL AND ${isEnvelopeSql(col)} GROUP BY 1 ORDER BY 1`,
    );
    const known = SEALED_COLUMNS.some((s) => s.table === table && s.column === column);
    for (const r of rows) out.push({ table, column, version: Number(r.version), count: Number(r.count), known });
  }
  return out;
}
