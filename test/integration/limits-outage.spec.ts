import { randomBytes, randomUUID } from 'node:crypto';
import { LimitsService } from '../../src/limits/limits.service';
import type { LimitRefusal, Reservation } from '../../src/limits/limits.types';
import { startTestApp, type TestApp } from '../support/test-app';
import { TEST_ENV, withAdminClient } from '../support/test-database';

const one = { tokens: 0, usd: 0, requests: 1 };
const isOk = (r: Reservation | LimitRefusal): r is Reservation => r.ok;

async function keyWithLimit(t: TestApp, limit: number, current = 0): Promise<string> {
  const id = randomUUID();
  await t.dataSource.query(
    `INSERT INTO api_keys (id, provider, name, secret_hint, fingerprint, usage_limit, usage_unit, usage_period,
       usage_current, reset_at)
     VALUES ($1, 'openai', 'limited', 'sk-…test', $2, $3, 'requests', 'monthly', $4, keyward_period_end('monthly', now()))`,
    [id, randomBytes(16).toString('hex'), limit, current],
  );
  await t.app.get(LimitsService).reload();
  return id;
}

const usageOf = async (t: TestApp, id: string) =>
  Number(
    (await t.dataSource.query<{ usage_current: string }[]>(`SELECT usage_current FROM api_keys WHERE id = $1`, [id]))[0]
      .usage_current,
  );

/** Flushes until the queue is empty (bounded: the stores are back, so a few rounds do it). */
async function settleEverything(limits: LimitsService): Promise<void> {
  for (let i = 0; i < 20 && limits.pendingSettlements > 0; i++) await limits.flush(3);
}

describe('LimitsService when its store does not answer', () => {
  it('counts in memory from the last known level while PostgreSQL is away, and reconciles after', async () => {
    const t = await startTestApp();
    const limits = t.app.get(LimitsService);
    const database = new URL(t.databaseUrl).pathname.slice(1);
    const serverUrl = process.env[TEST_ENV.serverUrl]!;
    try {
      const keyId = await keyWithLimit(t, 10);
      const before = await Promise.all(
        Array.from({ length: 4 }, () => limits.reserve({ keyId, accessTokenId: null, worstCase: one })),
      );
      before.forEach((r) => limits.settle(r as Reservation, one));
      await settleEverything(limits);
      expect(await usageOf(t, keyId)).toBe(4);

      // The database goes away: no new connections, the open ones cut.
      await withAdminClient(serverUrl, async (admin) => {
        await admin.query(`ALTER DATABASE "${database}" ALLOW_CONNECTIONS false`);
        await admin.query(
          `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
          [database],
        );
      });
      const during: (Reservation | LimitRefusal)[] = [];
      for (let i = 0; i < 10; i++) during.push(await limits.reserve({ keyId, accessTokenId: null, worstCase: one }));
      const admitted = during.filter(isOk);
      // From the 4 it knew of, not from zero: 6 more fit under 10.
      expect(admitted).toHaveLength(6);
      expect(admitted.every((r) => r.store === 'local')).toBe(true);
      expect(during.find((r) => !r.ok)).toMatchObject({ scope: 'key', limit: 10, used: 10 });
      admitted.forEach((r) => limits.settle(r, one));
      await limits.flush(1);
      expect(limits.pendingSettlements).toBeGreaterThan(0);

      await withAdminClient(serverUrl, (admin) => admin.query(`ALTER DATABASE "${database}" ALLOW_CONNECTIONS true`));
      await settleEverything(limits);
      expect(limits.pendingSettlements).toBe(0);
      expect(await usageOf(t, keyId)).toBe(10);

      // Back in the shared store, which refuses the 11th.
      await new Promise((resolve) => setTimeout(resolve, 1100));
      const after = await limits.reserve({ keyId, accessTokenId: null, worstCase: one });
      expect(after).toMatchObject({ ok: false, scope: 'key', used: 10 });
    } finally {
      await withAdminClient(serverUrl, (admin) =>
        admin.query(`ALTER DATABASE "${database}" ALLOW_CONNECTIONS true`),
      ).catch(() => undefined);
      await t.close();
    }
  }, 60_000);

  it('counts in memory from the database while Redis cannot be reached, and still writes the database', async () => {
    // Nothing listens on port 1: every Redis call fails at once.
    const t = await startTestApp({ REDIS_URL: 'redis://127.0.0.1:1' });
    const limits = t.app.get(LimitsService);
    try {
      const keyId = await keyWithLimit(t, 10, 7);
      const results: (Reservation | LimitRefusal)[] = [];
      for (let i = 0; i < 5; i++) results.push(await limits.reserve({ keyId, accessTokenId: null, worstCase: one }));
      const admitted = results.filter(isOk);
      expect(admitted).toHaveLength(3);
      expect(admitted.every((r) => r.store === 'local')).toBe(true);
      admitted.forEach((r) => limits.settle(r, one));
      await limits.flush(2);
      // The database learnt of them although Redis is still away (its copies wait in their queue).
      expect(await usageOf(t, keyId)).toBe(10);
      expect(limits.pendingSettlements).toBeGreaterThan(0);
    } finally {
      await t.close();
    }
  }, 60_000);
});
