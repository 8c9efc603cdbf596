import { createHmac } from 'node:crypto';
import { canonicalJson } from './canonical-json';

export const GENESIS_HASH = '0'.repeat(64);

/** The fields of an audit row that the chain protects (everything but the hash itself). */
export interface ChainedFields {
  seq: number;
  at: Date;
  actorId: string | null;
  actorEmail: string | null;
  actorRole: string | null;
  ip: string | null;
  userAgent: string | null;
  action: string;
  targetType: string | null;
  targetId: string | null;
  outcome: string;
  status: number | null;
  reason: string | null;
  details: Record<string, unknown>;
  prevHash: string;
}

/**
 * HMAC rather than a bare hash: someone who can write to the database but does not hold the
 * server key cannot recompute a consistent chain after editing a row.
 */
export function chainHash(key: Buffer, row: ChainedFields): string {
  const material = canonicalJson([
    row.seq,
    row.at.toISOString(),
    row.actorId,
    row.actorEmail,
    row.actorRole,
    row.ip,
    row.userAgent,
    row.action,
    row.targetType,
    row.targetId,
    row.outcome,
    row.status,
    row.reason,
    row.details,
    row.prevHash,
  ]);
  return createHmac('sha256', key).update(material).digest('hex');
}

export interface ChainBreak {
  seq: number;
  reason: string;
}

/**
 * Checks one batch of rows in `seq` order, continuing from the previous batch's last row.
 * Returns the first break, or null.
 */
export function findBreak(
  key: Buffer,
  rows: (ChainedFields & { hash: string })[],
  previous: { seq: number; hash: string } | null,
): ChainBreak | null {
  let prev = previous;
  for (const row of rows) {
    const expectedSeq = prev ? prev.seq + 1 : 1;
    if (row.seq !== expectedSeq) {
      return { seq: row.seq, reason: `entries ${expectedSeq}–${row.seq - 1} are missing` };
    }
    const expectedPrev = prev ? prev.hash : GENESIS_HASH;
    if (row.prevHash !== expectedPrev) {
      return { seq: row.seq, reason: 'prev_hash does not match the previous entry' };
    }
    if (chainHash(key, row) !== row.hash) {
      return { seq: row.seq, reason: 'the entry was modified after it was written' };
    }
    prev = { seq: row.seq, hash: row.hash };
  }
  return null;
}
