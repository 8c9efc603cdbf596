import { randomBytes } from 'node:crypto';
import { chainHash, type ChainedFields, findBreak, GENESIS_HASH } from './audit-chain';

const key = randomBytes(32);

function chain(length: number): (ChainedFields & { hash: string })[] {
  const rows: (ChainedFields & { hash: string })[] = [];
  let prevHash = GENESIS_HASH;
  for (let seq = 1; seq <= length; seq++) {
    const fields: ChainedFields = {
      seq,
      at: new Date(Date.UTC(2026, 10, 25, 12, 0, seq)),
      actorId: null,
      actorEmail: `user${seq}@example.test`,
      actorRole: 'owner',
      ip: '127.0.0.1',
      userAgent: 'jest',
      action: 'user.create',
      targetType: 'User',
      targetId: String(seq),
      outcome: 'success',
      status: 201,
      reason: null,
      details: { n: seq },
      prevHash,
    };
    const hash = chainHash(key, fields);
    rows.push({ ...fields, hash });
    prevHash = hash;
  }
  return rows;
}

describe('audit hash chain', () => {
  it('accepts an untouched chain, also when checked in batches', () => {
    const rows = chain(6);
    expect(findBreak(key, rows, null)).toBeNull();
    expect(findBreak(key, rows.slice(3), { seq: 3, hash: rows[2].hash })).toBeNull();
  });

  it.each([
    ['outcome', { outcome: 'failure' }],
    ['details', { details: { n: 99 } }],
    ['time', { at: new Date(0) }],
    ['actor', { actorEmail: 'someone-else@example.test' }],
  ])('names the first entry whose %s was edited', (_field, change) => {
    const rows = chain(5);
    rows[2] = { ...rows[2], ...change };
    expect(findBreak(key, rows, null)).toEqual({ seq: 3, reason: expect.stringMatching(/modified/) });
  });

  it('notices a removed entry and a re-hashed edit without the server key', () => {
    const rows = chain(5);
    expect(findBreak(key, [...rows.slice(0, 2), ...rows.slice(3)], null)).toMatchObject({ seq: 4 });

    const forged = { ...rows[1], outcome: 'failure' };
    forged.hash = chainHash(randomBytes(32), forged);
    const withForgery = [rows[0], forged, ...rows.slice(2)];
    expect(findBreak(key, withForgery, null)).toMatchObject({ seq: 2 });
  });
});
