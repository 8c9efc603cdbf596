import type { AddressInfo } from 'node:net';
import request from 'supertest';
import { startFakeProvider, type OpenAiFakeProvider } from '../fake-providers';
import { LimitsService } from '../../src/limits/limits.service';
import { UsageRecorder } from '../../src/usage/usage-recorder';
import { apiToken, startTestApp, type TestApp } from '../support/test-app';
import { TEST_ENV } from '../support/test-database';

const REDIS_URL = process.env[TEST_ENV.redisUrl] ?? '';

/**
 * Limits and budgets through the gateway, with two instances on one database (and then one
 * Redis): each request's worst case is reserved before it is forwarded, so concurrency, streams
 * and a second instance cannot overshoot.
 */
describe.each([
  ['PostgreSQL', ''],
  ['Redis', REDIS_URL],
])('Gateway limits across two instances (%s)', (store, redisUrl) => {
  const run = store === 'PostgreSQL' || redisUrl !== '' ? describe : describe.skip;
  run('', () => {
    let a: TestApp;
    let b: TestApp;
    let bases: string[];
    let openai: OpenAiFakeProvider;
    let admin: string;
    const auth = () => ({ Authorization: `Bearer ${admin}` });

    beforeAll(async () => {
      openai = await startFakeProvider('openai');
      process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL = openai.baseUrl;
      const env = { KEYWARD_USAGE_FLUSH_MS: '50', ...(redisUrl ? { REDIS_URL: redisUrl } : {}) };
      a = await startTestApp(env);
      b = await startTestApp(env, { instanceOf: a });
      bases = [];
      for (const app of [a, b]) {
        await new Promise<void>((resolve) => app.http.listen(0, '127.0.0.1', resolve));
        bases.push(`http://127.0.0.1:${(app.http.address() as AddressInfo).port}`);
      }
      admin = await apiToken(a.http);
    }, 60_000);

    afterAll(async () => {
      await b?.close();
      await a?.close();
      await openai?.close();
      delete process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL;
    });

    /** The only active OpenAI key, answering with exactly this usage. */
    async function onlyKey(usage: { input: number; output: number }, limit?: Record<string, unknown>) {
      const list = await request(a.http).get('/api/admin/api-keys?provider=openai&active=true').set(auth());
      for (const key of list.body.keys) {
        await request(a.http).post(`/api/admin/api-keys/${key.id}/revoke`).set(auth()).expect(200);
      }
      const res = await request(a.http)
        .post('/api/admin/api-keys')
        .set(auth())
        .send({ provider: 'openai', name: 'limited', key: openai.generateKey({ kind: 'valid', usage }), limit })
        .expect(201);
      await Promise.all([a.app.get(LimitsService).reload(), b.app.get(LimitsService).reload()]);
      return res.body.id as string;
    }

    async function accessToken(body: Record<string, unknown> = {}): Promise<string> {
      const res = await request(a.http)
        .post('/api/admin/access-tokens')
        .set(auth())
        .send({ name: 'app', ...body });
      if (res.status !== 201) throw new Error(`token answered ${res.status}: ${JSON.stringify(res.body)}`);
      await Promise.all([a.app.get(LimitsService).reload(), b.app.get(LimitsService).reload()]);
      return res.body.token;
    }

    const call = (i: number, token: string, body: Record<string, unknown>) =>
      fetch(`${bases[i % 2]}/proxy/openai/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-5', messages: [{ role: 'user', content: 'hi' }], ...body }),
      }).then(async (res) => ({ status: res.status, text: await res.text() }));

    async function flushBoth() {
      await Promise.all([a.app.get(UsageRecorder).flush(), b.app.get(UsageRecorder).flush()]);
      await Promise.all([a.app.get(LimitsService).flush(3), b.app.get(LimitsService).flush(3)]);
    }

    it('serves at most 2 of 50 concurrent 1,100-token streams against a 2,000-token key limit', async () => {
      const keyId = await onlyKey({ input: 10, output: 1090 }, { value: 2000, unit: 'tokens', period: 'monthly' });
      const token = await accessToken();
      const results = await Promise.all(
        Array.from({ length: 50 }, (_, i) => call(i, token, { stream: true, max_tokens: 1090 })),
      );
      const served = results.filter((r) => r.status === 200);
      expect(served.length).toBeGreaterThanOrEqual(1);
      expect(served.length).toBeLessThanOrEqual(2);
      expect(results.filter((r) => r.status === 429)).toHaveLength(50 - served.length);
      await flushBoth();
      const [row] = await a.dataSource.query(`SELECT usage_current::float AS used FROM api_keys WHERE id = $1`, [
        keyId,
      ]);
      expect(row.used).toBe(served.length * 1100);
      expect(row.used).toBeLessThanOrEqual(2000 + 1100);
    });

    it('serves exactly 300 of 600 requests over both instances against a 300-request key limit', async () => {
      const keyId = await onlyKey({ input: 5, output: 5 }, { value: 300, unit: 'requests', period: 'monthly' });
      const token = await accessToken();
      const statuses: number[] = [];
      // 600 calls, 40 at a time, alternating between the instances.
      for (let start = 0; start < 600; start += 40) {
        const batch = await Promise.all(
          Array.from({ length: 40 }, (_, j) => call(start + j, token, { max_tokens: 5 })),
        );
        statuses.push(...batch.map((r) => r.status));
      }
      expect(statuses.filter((s) => s === 200)).toHaveLength(300);
      expect(statuses.filter((s) => s === 429)).toHaveLength(300);
      await flushBoth();
      const [row] = await a.dataSource.query(`SELECT usage_current::float AS used FROM api_keys WHERE id = $1`, [
        keyId,
      ]);
      expect(row.used).toBe(300);
    });

    it("holds a token's USD budget over both instances", async () => {
      await onlyKey({ input: 10, output: 100 });
      // gpt-5: $1.25 / $10 per million tokens → about $0.001 a call; the budget fits about ten.
      const budget = 0.0105;
      const token = await accessToken({ budgets: [{ unit: 'usd', period: 'monthly', limit: budget }] });
      const results = await Promise.all(Array.from({ length: 60 }, (_, i) => call(i, token, { max_tokens: 100 })));
      const served = results.filter((r) => r.status === 200);
      const refused = results.filter((r) => r.status === 429);
      expect(served.length).toBeGreaterThan(0);
      expect(served.length + refused.length).toBe(60);
      expect(JSON.parse(refused[0].text)).toMatchObject({ type: 'urn:keyward:problem:budget-exceeded' });
      await flushBoth();
      const [spent] = await a.dataSource.query(
        `SELECT coalesce(sum(cost), 0)::float AS usd FROM usage_events WHERE success AND access_token_id IS NOT NULL AND cost > 0 AND model = 'gpt-5' AND total_tokens = 110`,
      );
      expect(spent.usd).toBeLessThanOrEqual(budget);
      const shown = await request(a.http).get('/api/admin/access-tokens').set(auth()).expect(200);
      const withBudget = shown.body.tokens.find((t: { budgets?: unknown[] }) => (t.budgets ?? []).length > 0);
      expect(withBudget.budgets[0].used).toBeCloseTo(spent.usd, 9);
    });

    it('counts an abandoned call against the limit', async () => {
      const list = await request(a.http).get('/api/admin/api-keys?provider=openai&active=true').set(auth());
      for (const key of list.body.keys) {
        await request(a.http).post(`/api/admin/api-keys/${key.id}/revoke`).set(auth()).expect(200);
      }
      const created = await request(a.http)
        .post('/api/admin/api-keys')
        .set(auth())
        .send({
          provider: 'openai',
          name: 'slow',
          key: openai.generateKey({ kind: 'slow', delayMs: 400 }),
          limit: { value: 1_000_000, unit: 'tokens', period: 'monthly' },
        })
        .expect(201);
      await Promise.all([a.app.get(LimitsService).reload(), b.app.get(LimitsService).reload()]);
      const token = await accessToken();
      await fetch(`${bases[0]}/proxy/openai/v1/chat/completions`, {
        method: 'POST',
        signal: AbortSignal.timeout(100),
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-5', stream: true, messages: [{ role: 'user', content: 'x'.repeat(400) }] }),
      }).catch(() => undefined);
      // The abandoned call is recorded once the gateway notices the client left.
      let rows: { error_type: string; total_tokens: number }[] = [];
      for (let i = 0; i < 40 && rows.length === 0; i++) {
        await new Promise((r) => setTimeout(r, 50));
        await flushBoth();
        rows = await a.dataSource.query(`SELECT error_type, total_tokens FROM usage_events WHERE key_id = $1`, [
          created.body.id,
        ]);
      }
      expect(rows).toHaveLength(1);
      expect(rows[0].error_type).toBe('client_aborted');
      expect(rows[0].total_tokens).toBeGreaterThan(100);
      const [row] = await a.dataSource.query(`SELECT usage_current::float AS used FROM api_keys WHERE id = $1`, [
        created.body.id,
      ]);
      expect(row.used).toBe(rows[0].total_tokens);
    });
  });
});
