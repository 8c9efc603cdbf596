import Redis from 'ioredis';
import { randomBytes, randomUUID } from 'node:crypto';
import { LimitsService } from '../../src/limits/limits.service';
import type { LimitRefusal, Reservation, UsageAmount } from '../../src/limits/limits.types';
import request from 'supertest';
import { apiToken, startTestApp, type TestApp } from '../support/test-app';
import { TEST_ENV } from '../support/test-database';

// Found (or not) by the global setup; the Redis half is skipped only when no Redis runs here.
const REDIS_URL = process.env[TEST_ENV.redisUrl] ?? '';

const isOk = (r: Reservation | LimitRefusal): r is Reservation => r.ok;
const requests = (n: number): UsageAmount => ({ tokens: 0, usd: 0, requests: n });
const tokens = (n: number): UsageAmount => ({ tokens: n, usd: 0, requests: 1 });

/**
 * Two instances of Keyward on one database (and, in the second half, one Redis): every limit and
 * budget must hold across both at once, as the reproductions demanded.
 */
describe.each([
  ['PostgreSQL', ''],
  ['Redis', REDIS_URL],
])('LimitsService across two instances (%s)', (store, redisUrl) => {
  const run = store === 'PostgreSQL' || redisUrl !== '' ? describe : describe.skip;
  run('', () => {
    let a: TestApp;
    let b: TestApp;
    let limitsA: LimitsService;
    let limitsB: LimitsService;

    beforeAll(async () => {
      const env = redisUrl ? { REDIS_URL: redisUrl } : {};
      a = await startTestApp(env);
      b = await startTestApp(env, { instanceOf: a });
      limitsA = a.app.get(LimitsService);
      limitsB = b.app.get(LimitsService);
    }, 60_000);

    afterAll(async () => {
      await b?.close();
      await a?.close();
    });

    async function keyWithLimit(limit: number, unit: 'tokens' | 'requests' | 'usd', period = 'monthly') {
      const id = randomUUID();
      await a.dataSource.query(
        `INSERT INTO api_keys (id, provider, name, secret_hint, fingerprint, usage_limit, usage_unit, usage_period, reset_at)
         VALUES ($1, 'openai', 'limited', 'sk-…test', $2, $3, $4, $5, keyward_period_end($5, now()))`,
        [id, randomBytes(16).toString('hex'), limit, unit, period],
      );
      await Promise.all([limitsA.reload(), limitsB.reload()]);
      return id;
    }

    async function tokenWithBudget(limit: number, unit: 'tokens' | 'requests' | 'usd', period = 'monthly') {
      const id = randomUUID();
      await a.dataSource.query(
        `INSERT INTO access_tokens (id, name, token_hash, token_hint) VALUES ($1, 'app', $2, 'kw_…test')`,
        [id, randomBytes(32).toString('hex')],
      );
      await a.dataSource.query(
        `INSERT INTO access_token_budgets (access_token_id, unit, period, "limit", reset_at)
         VALUES ($1, $2, $3, $4, keyward_period_end($3, now()))`,
        [id, unit, period, limit],
      );
      await Promise.all([limitsA.reload(), limitsB.reload()]);
      return id;
    }

    const keyRow = async (id: string) => {
      const [row] = await a.dataSource.query<{ usage_current: string; usage_reserved: string }[]>(
        `SELECT usage_current, usage_reserved FROM api_keys WHERE id = $1`,
        [id],
      );
      return { current: Number(row.usage_current), reserved: Number(row.usage_reserved) };
    };
    const budgetRow = async (tokenId: string) => {
      const [row] = await a.dataSource.query<{ used: string; reserved: string }[]>(
        `SELECT used, reserved FROM access_token_budgets WHERE access_token_id = $1`,
        [tokenId],
      );
      return { used: Number(row.used), reserved: Number(row.reserved) };
    };

    /** `n` reservations at once, alternating between the two instances. */
    const burst = (n: number, input: (i: number) => Parameters<LimitsService['reserve']>[0]) =>
      Promise.all(Array.from({ length: n }, (_, i) => (i % 2 === 0 ? limitsA : limitsB).reserve(input(i))));

    const settleAll = async (reservations: Reservation[], actual: UsageAmount) => {
      reservations.forEach((r, i) => (i % 2 === 0 ? limitsA : limitsB).settle(r, actual));
      await Promise.all([limitsA.flush(3), limitsB.flush(3)]);
      await Promise.all([limitsA.flush(3), limitsB.flush(3)]);
    };

    it('admits exactly 300 of 600 concurrent requests against a 300-request key limit', async () => {
      const keyId = await keyWithLimit(300, 'requests');
      expect(limitsA.applies(keyId, null)).toBe(true);
      expect(limitsB.applies(keyId, null)).toBe(true);

      const results = await burst(600, () => ({ keyId, accessTokenId: null, worstCase: requests(1) }));
      const admitted = results.filter(isOk);
      expect(admitted).toHaveLength(300);
      // Both instances admitted some: the count is shared, not per instance.
      expect(admitted.filter((_, i) => i % 2 === 0).length).toBeGreaterThan(0);
      expect(results.findIndex((r) => !r.ok && r.scope === 'key' && r.unit === 'requests')).toBeGreaterThan(-1);
      expect(admitted.every((r) => r.store === (redisUrl ? 'redis' : 'postgres'))).toBe(true);

      await settleAll(admitted, requests(1));
      expect((await keyRow(keyId)).current).toBe(300);
      expect((await keyRow(keyId)).reserved).toBe(0);
      const after = await limitsB.reserve({ keyId, accessTokenId: null, worstCase: requests(1) });
      expect(after).toMatchObject({ ok: false, scope: 'key', limit: 300, used: 300, period: 'monthly' });
      expect((after as LimitRefusal).resetAt).toBeInstanceOf(Date);
    });

    it('admits at most one of 50 concurrent 1,100-token requests against a 2,000-token limit', async () => {
      const keyId = await keyWithLimit(2000, 'tokens');
      const results = await burst(50, () => ({ keyId, accessTokenId: null, worstCase: tokens(1100) }));
      expect(results.filter(isOk)).toHaveLength(1);
      const refusal = results.find((r) => !r.ok) as LimitRefusal;
      expect(refusal).toMatchObject({ scope: 'key', unit: 'tokens', limit: 2000, used: 1100 });
      expect(refusal.detail).toMatch(/2000 tokens/);
    });

    it("holds a token's USD budget across both instances", async () => {
      const accessTokenId = await tokenWithBudget(0.01, 'usd');
      expect(limitsA.applies('00000000-0000-4000-8000-000000000000', accessTokenId)).toBe(true);
      const worst = { tokens: 1000, usd: 0.0011, requests: 1 };
      const results = await burst(50, () => ({ keyId: null, accessTokenId, worstCase: worst }));
      const admitted = results.filter(isOk);
      expect(admitted).toHaveLength(9); // 9 × $0.0011 = $0.0099 ≤ $0.01 < 10 × $0.0011
      expect(results.find((r) => !r.ok)).toMatchObject({ scope: 'token', unit: 'usd', period: 'monthly' });

      await settleAll(admitted, { tokens: 100, usd: 0.0001, requests: 1 });
      const row = await budgetRow(accessTokenId);
      expect(row.used).toBeCloseTo(0.0009, 10);
      expect(row.reserved).toBe(0);
    });

    it('is all or nothing over the key and the token', async () => {
      const keyId = await keyWithLimit(1_000_000, 'tokens');
      const accessTokenId = await tokenWithBudget(1000, 'tokens');
      const refused = await limitsA.reserve({ keyId, accessTokenId, worstCase: tokens(1001) });
      expect(refused).toMatchObject({ ok: false, scope: 'token', unit: 'tokens', limit: 1000 });
      const held = await limitsB.reserve({ keyId, accessTokenId, worstCase: tokens(1000) });
      expect(held.ok).toBe(true);
      // The refused request left nothing behind on the key: only the admitted one is held.
      if (!redisUrl) expect((await keyRow(keyId)).reserved).toBe(1000);
      limitsB.release(held as Reservation);
      await limitsB.flush(3);
      if (!redisUrl) expect((await keyRow(keyId)).reserved).toBe(0);
    });

    it('settles to the actual usage and frees the rest; a release frees all', async () => {
      const keyId = await keyWithLimit(2000, 'tokens');
      const first = await limitsA.reserve({ keyId, accessTokenId: null, worstCase: tokens(1100) });
      expect(first.ok).toBe(true);
      expect((await limitsB.reserve({ keyId, accessTokenId: null, worstCase: tokens(1100) })).ok).toBe(false);

      limitsA.settle(first as Reservation, tokens(300));
      limitsA.settle(first as Reservation, tokens(300)); // a second settle is ignored
      await limitsA.flush(3);
      await limitsA.flush(3);
      expect(await keyRow(keyId)).toEqual({ current: 300, reserved: 0 });

      // 300 settled + 1,100 fits under 2,000; a second 1,100 does not.
      const second = await limitsB.reserve({ keyId, accessTokenId: null, worstCase: tokens(1100) });
      expect(second.ok).toBe(true);
      expect((await limitsA.reserve({ keyId, accessTokenId: null, worstCase: tokens(1100) })).ok).toBe(false);
      limitsB.release(second as Reservation);
      await limitsB.flush(3);
      await limitsB.flush(3);
      expect(await keyRow(keyId)).toEqual({ current: 300, reserved: 0 });
      expect((await limitsA.reserve({ keyId, accessTokenId: null, worstCase: tokens(1700) })).ok).toBe(true);
    });

    it('refuses an unpriced model where a USD budget applies, and counts a charge once', async () => {
      const accessTokenId = await tokenWithBudget(5, 'usd');
      const unpriced = await limitsA.reserve({
        keyId: null,
        accessTokenId,
        worstCase: { tokens: 10, usd: 0, requests: 1, unpriced: true },
      });
      expect(unpriced).toMatchObject({ ok: false, scope: 'token', unit: 'usd' });
      expect((unpriced as LimitRefusal).detail).toMatch(/no price/);

      limitsA.charge({ keyId: null, accessTokenId, actual: { tokens: 10, usd: 4.5, requests: 1 } });
      await limitsA.flush(3);
      await limitsA.flush(3);
      expect((await budgetRow(accessTokenId)).used).toBeCloseTo(4.5, 10);
      await limitsB.reload();
      const over = await limitsB.reserve({
        keyId: null,
        accessTokenId,
        worstCase: { tokens: 1, usd: 0.6, requests: 1 },
      });
      expect(over).toMatchObject({ ok: false, scope: 'token' });
    });

    it('counts a reservation nobody settled at its worst case once it expires; a late settle changes nothing', async () => {
      const keyId = await keyWithLimit(10_000, 'tokens');
      const lost = (await limitsA.reserve({ keyId, accessTokenId: null, worstCase: tokens(1500) })) as Reservation;
      expect(lost.ok).toBe(true);
      if (redisUrl) {
        const redis = new Redis(redisUrl);
        await redis.zadd('keyward:limits:expiry', 0, lost.id);
        await redis.quit();
      } else {
        await a.dataSource.query(`UPDATE limit_reservations SET expires_at = now() - interval '1 s' WHERE id = $1`, [
          lost.id,
        ]);
      }
      expect(await limitsB.expireReservations()).toBeGreaterThanOrEqual(1);
      await Promise.all([limitsA.flush(3), limitsB.flush(3)]);
      await Promise.all([limitsA.flush(3), limitsB.flush(3)]);
      expect(await keyRow(keyId)).toEqual({ current: 1500, reserved: 0 });
      limitsA.settle(lost, tokens(10));
      await limitsA.flush(3);
      await limitsA.flush(3);
      expect(await keyRow(keyId)).toEqual({ current: 1500, reserved: 0 });
      // 1,500 used: 8,500 still fit, 8,501 does not.
      expect((await limitsB.reserve({ keyId, accessTokenId: null, worstCase: tokens(8501) })).ok).toBe(false);
      expect((await limitsB.reserve({ keyId, accessTokenId: null, worstCase: tokens(8500) })).ok).toBe(true);
    });

    it('starts a counter whose period ended from zero, without waiting for a job', async () => {
      const accessTokenId = await tokenWithBudget(5, 'requests', 'daily');
      const first = await burst(6, () => ({ keyId: null, accessTokenId, worstCase: requests(1) }));
      expect(first.filter(isOk)).toHaveLength(5);
      await settleAll(first.filter(isOk), requests(1));
      // The day ends (as far as the counters can tell).
      await a.dataSource.query(
        `UPDATE access_token_budgets SET reset_at = now() - interval '1 s' WHERE access_token_id = $1`,
        [accessTokenId],
      );
      if (redisUrl) {
        const redis = new Redis(redisUrl);
        const [budget] = await a.dataSource.query<{ id: string }[]>(
          `SELECT id FROM access_token_budgets WHERE access_token_id = $1`,
          [accessTokenId],
        );
        await redis.hset(`keyward:limits:c:budget:${budget.id}`, 't', String(Date.now() - 1000));
        await redis.quit();
      }
      const next = await burst(6, () => ({ keyId: null, accessTokenId, worstCase: requests(1) }));
      expect(next.filter(isOk)).toHaveLength(5);
      await settleAll(next.filter(isOk), requests(1));
      const [row] = await a.dataSource.query<{ used: string; reset_at: Date }[]>(
        `SELECT used, reset_at FROM access_token_budgets WHERE access_token_id = $1`,
        [accessTokenId],
      );
      expect(Number(row.used)).toBe(5);
      expect(row.reset_at.getTime()).toBeGreaterThan(Date.now());
    });

    it('hears of a budget set on the other instance at once (NOTIFY), not at the next reload', async () => {
      const owner = await apiToken(a.http);
      const created = await request(a.http)
        .post('/api/admin/access-tokens')
        .set('Authorization', `Bearer ${owner}`)
        .send({ name: 'notified', budgets: [{ unit: 'requests', period: 'daily', limit: 2 }] })
        .expect(201);
      const id = (created.body as { id: string }).id;
      expect(limitsA.applies(null, id)).toBe(true);
      // Bounded wait, well under the 5 s periodic reload.
      for (let i = 0; i < 40 && !limitsB.applies(null, id); i++) await new Promise((r) => setTimeout(r, 25));
      expect(limitsB.applies(null, id)).toBe(true);
    });
  });
});
