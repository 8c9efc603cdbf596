import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import {
  startFakeProvider,
  type AnthropicFakeProvider,
  type GroqFakeProvider,
  type OpenAiFakeProvider,
} from '../fake-providers';
import { LimitsService } from '../../src/limits/limits.service';
import { UsageRecorder } from '../../src/usage/usage-recorder';
import { apiToken, startTestApp, type TestApp } from '../support/test-app';

interface UsageEventRow {
  key_id: string | null;
  attempt: number;
  success: boolean;
  error_type: string | null;
  total_tokens: number;
}

/**
 * Applications calling providers through Keyward: official SDKs with only their base URL
 * changed, failover between keys, revokes under traffic, limits, and usage that adds up.
 */
describe('Gateway: proxy, failover, limits and usage', () => {
  let t: TestApp;
  let base: string;
  let openai: OpenAiFakeProvider;
  let anthropic: AnthropicFakeProvider;
  let groq: GroqFakeProvider;
  let admin: string;
  const auth = () => ({ Authorization: `Bearer ${admin}` });

  async function addKey(body: Record<string, unknown>): Promise<{ id: string; key: string }> {
    const res = await request(t.http).post('/api/admin/api-keys').set(auth()).send(body);
    if (res.status !== 201) throw new Error(`create answered ${res.status}: ${JSON.stringify(res.body)}`);
    return res.body;
  }
  async function accessToken(body: Record<string, unknown> = {}): Promise<string> {
    const res = await request(t.http)
      .post('/api/admin/access-tokens')
      .set(auth())
      .send({ name: `app-${Math.random()}`, ...body });
    if (res.status !== 201) throw new Error(`token answered ${res.status}: ${JSON.stringify(res.body)}`);
    return res.body.token;
  }
  /** Removes every key of a provider, so each test starts from its own keys. */
  async function clearKeys(provider: string): Promise<void> {
    const { body } = await request(t.http).get(`/api/admin/api-keys?provider=${provider}&active=true`).set(auth());
    for (const key of body.keys) {
      await request(t.http).post(`/api/admin/api-keys/${key.id}/revoke`).set(auth()).expect(200);
    }
  }
  const events = (keyIds: string[]): Promise<UsageEventRow[]> =>
    t.dataSource.query(
      `SELECT key_id, attempt, success, error_type, total_tokens FROM usage_events WHERE key_id = ANY($1) ORDER BY "timestamp", attempt`,
      [keyIds],
    );
  const chat = (token: string, model = 'gpt-5', extra: Record<string, unknown> = {}) =>
    fetch(`${base}/proxy/openai/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }], ...extra }),
    });

  beforeAll(async () => {
    [openai, anthropic, groq] = await Promise.all([
      startFakeProvider('openai'),
      startFakeProvider('anthropic'),
      startFakeProvider('groq'),
    ]);
    process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL = openai.baseUrl;
    process.env.KEYWARD_PROVIDER_ANTHROPIC_BASE_URL = anthropic.baseUrl;
    process.env.KEYWARD_PROVIDER_GROQ_BASE_URL = groq.baseUrl;
    t = await startTestApp({ KEYWARD_UPSTREAM_TIMEOUT_MS: '400', KEYWARD_USAGE_FLUSH_MS: '50' });
    await new Promise<void>((resolve) => t.app.getHttpServer().listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(t.app.getHttpServer().address() as AddressInfo).port}`;
    admin = await apiToken(t.http);
  });
  afterAll(async () => {
    await t.close();
    await Promise.all([openai.close(), anthropic.close(), groq.close()]);
    for (const id of ['OPENAI', 'ANTHROPIC', 'GROQ']) delete process.env[`KEYWARD_PROVIDER_${id}_BASE_URL`];
  });

  it('serves the official OpenAI SDK, plain and streaming, and the usage API shows what the fake reported', async () => {
    await clearKeys('openai');
    const secret = openai.generateKey({ kind: 'valid', usage: { input: 31, output: 4, cached: 8 } });
    const key = await addKey({ provider: 'openai', name: 'sdk', key: secret });
    const client = new OpenAI({ apiKey: await accessToken(), baseURL: `${base}/proxy/openai/v1` });

    const plain = await client.chat.completions.create({ model: 'gpt-5', messages: [{ role: 'user', content: 'hi' }] });
    expect(plain.usage).toMatchObject({ prompt_tokens: 31, completion_tokens: 4 });
    expect(plain.choices[0].message.content).toEqual(expect.any(String));

    const stream = await client.chat.completions.create({
      model: 'gpt-5',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
    });
    let text = '';
    const chunks: { choices: unknown[]; usage?: unknown }[] = [];
    for await (const chunk of stream) {
      chunks.push(chunk);
      text += chunk.choices[0]?.delta?.content ?? '';
    }
    expect(text.length).toBeGreaterThan(0);
    // Keyward asked the provider for usage; the client, which did not, never sees that chunk.
    expect(chunks.every((c) => c.choices.length > 0)).toBe(true);
    expect(openai.requests.at(-1)!.body).toMatchObject({ stream_options: { include_usage: true } });
    expect(openai.requests.filter((r) => r.key === secret)).toHaveLength(2);
    expect(openai.requests.at(-1)!.headers.authorization).toBe(`Bearer ${secret}`);

    const reported = openai.requests.filter((r) => r.key === secret).map((r) => r.reportedUsage!);
    const prices = await request(t.http).get('/api/admin/providers/openai/pricing').set(auth()).expect(200);
    const price = prices.body.prices.find((p: { model: string }) => p.model === 'gpt-5');
    const costOf = (u: { input: number; output: number; cached: number }) =>
      ((u.input - u.cached) * price.input + u.cached * (price.cachedInput ?? price.input) + u.output * price.output) /
      1e6;
    const expectedCost = reported.reduce((sum, u) => sum + costOf(u), 0);
    const expectedTokens = reported.reduce((sum, u) => sum + u.input + u.output, 0);

    const deadline = Date.now() + 1000;
    let usage: { history: { daily: { tokens: number; requests: number; cost: number }[] } } | undefined;
    do {
      usage = (await request(t.http).get(`/api/admin/api-keys/${key.id}/usage`).set(auth()).expect(200)).body;
      if (usage!.history.daily.at(-1)!.requests === 2) break;
      await new Promise((r) => setTimeout(r, 50));
    } while (Date.now() < deadline);
    const today = usage!.history.daily.at(-1)!;
    expect(today).toMatchObject({ requests: 2, tokens: expectedTokens, inputTokens: 62, outputTokens: 8 });
    expect(today.cost).toBeCloseTo(expectedCost, 9);
  });

  it('serves the official Anthropic SDK through x-api-key, plain and streaming', async () => {
    const secret = anthropic.generateKey({ kind: 'valid', usage: { input: 12, output: 7 } });
    const key = await addKey({ provider: 'anthropic', name: 'claude', key: secret });
    const client = new Anthropic({ apiKey: await accessToken(), baseURL: `${base}/proxy/anthropic` });
    const message = await client.messages.create({
      model: 'claude-haiku-4-5',
      max_tokens: 64,
      messages: [{ role: 'user', content: 'hi' }],
    });
    expect(message.usage).toMatchObject({ input_tokens: 12, output_tokens: 7 });
    expect(anthropic.requests.at(-1)!.headers['x-api-key']).toBe(secret);
    expect(anthropic.requests.at(-1)!.headers['anthropic-version']).toEqual(expect.any(String));

    const stream = client.messages.stream({
      model: 'claude-haiku-4-5',
      max_tokens: 64,
      messages: [{ role: 'user', content: 'hi' }],
    });
    const final = await stream.finalMessage();
    expect(final.usage.output_tokens).toBe(7);

    await t.app.get(UsageRecorder).flush();
    const rows = await events([key.id]);
    expect(rows.map((r) => [r.success, r.total_tokens])).toEqual([
      [true, 19],
      [true, 19],
    ]);
    const prices = await request(t.http).get('/api/admin/providers/anthropic/pricing').set(auth()).expect(200);
    const price = prices.body.prices.find((p: { model: string }) => p.model === 'claude-haiku-4-5');
    const usage = await request(t.http).get(`/api/admin/api-keys/${key.id}/usage`).set(auth()).expect(200);
    expect(usage.body.history.daily.at(-1)).toMatchObject({ requests: 2, inputTokens: 24, outputTokens: 14 });
    expect(usage.body.history.daily.at(-1).cost).toBeCloseTo((2 * (12 * price.input + 7 * price.output)) / 1e6, 9);
  });

  it.each([
    ['a revoked key (401)', { kind: 'revoked' as const }, 'invalid_key'],
    ['a rate-limited key (429)', { kind: 'rate_limited' as const, retryAfterSeconds: 30 }, 'rate_limited'],
    ['a failing key (500)', { kind: 'failing' as const, status: 500 }, 'provider_error'],
  ])('fails over from %s to the next key and records both attempts', async (_name, behaviour, errorType) => {
    await clearKeys('openai');
    const bad = await addKey({ provider: 'openai', name: 'first', key: openai.generateKey(behaviour), priority: 1 });
    const good = await addKey({ provider: 'openai', name: 'second', key: openai.generateKey(), priority: 2 });
    const token = await accessToken();
    const res = await chat(token);
    expect(res.status).toBe(200);
    expect(res.headers.get('x-keyward-attempts')).toBe('2');
    await t.app.get(UsageRecorder).flush();
    expect((await events([bad.id, good.id])).map((e) => [e.key_id, e.attempt, e.success, e.error_type])).toEqual([
      [bad.id, 1, false, errorType],
      [good.id, 2, true, null],
    ]);
    const marked = await t.dataSource.query(`SELECT health, cooldown_until FROM api_keys WHERE id = $1`, [bad.id]);
    if (errorType === 'invalid_key') {
      expect(marked[0].health).toBe('unhealthy');
      const shown = await request(t.http).get(`/api/admin/api-keys/${bad.id}`).set(auth()).expect(200);
      expect(shown.body.health).toMatchObject({ status: 'unhealthy', reason: expect.any(String) });
      const alerts = await t.dataSource.query(`SELECT kind FROM alert_events WHERE key_id = $1`, [bad.id]);
      expect(alerts).toEqual([{ kind: 'key.invalid' }]);
    } else if (errorType === 'rate_limited') {
      // The provider said how long: written to the row, so every instance lets the key rest.
      expect(new Date(marked[0].cooldown_until).getTime()).toBeGreaterThan(Date.now());
    } else {
      // A short cool-down of one instance: a blip is not worth telling the others about.
      expect(marked[0]).toEqual({ health: 'healthy', cooldown_until: null });
    }
    // The marked key rests: the next call goes straight to the second key.
    const again = await chat(token);
    expect(again.headers.get('x-keyward-attempts')).toBe('1');
  });

  it('does not send a call again once the provider may have accepted it (a hanging key), unless configured', async () => {
    await clearKeys('openai');
    const bad = await addKey({
      provider: 'openai',
      name: 'hangs',
      key: openai.generateKey({ kind: 'hang' }),
      priority: 1,
    });
    const good = await addKey({ provider: 'openai', name: 'fine', key: openai.generateKey(), priority: 2 });
    const token = await accessToken();
    const before = openai.requests.length;
    const res = await chat(token);
    expect(res.status).toBe(504);
    expect(await res.json()).toMatchObject({ type: 'urn:keyward:problem:upstream-timeout' });
    // Billed twice is worse than a timeout: the second key never saw the call.
    expect(openai.requests.slice(before)).toHaveLength(1);
    await t.app.get(UsageRecorder).flush();
    expect((await events([bad.id, good.id])).map((e) => [e.key_id, e.attempt, e.success, e.error_type])).toEqual([
      [bad.id, 1, false, 'timeout'],
    ]);
  });

  it('does not hold a client that leaves before the answer against the key', async () => {
    await clearKeys('openai');
    const slow = openai.generateKey({ kind: 'slow', delayMs: 300 });
    const key = await addKey({ provider: 'openai', name: 'slow', key: slow });
    const token = await accessToken();
    await fetch(`${base}/proxy/openai/v1/chat/completions`, {
      method: 'POST',
      signal: AbortSignal.timeout(50),
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-5', messages: [{ role: 'user', content: 'hi' }] }),
    }).catch(() => undefined);
    // The provider answers the abandoned call after 300 ms; by then nothing may have marked the key.
    await new Promise((r) => setTimeout(r, 400));
    const [row] = await t.dataSource.query(`SELECT health, cooldown_until FROM api_keys WHERE id = $1`, [key.id]);
    expect(row).toEqual({ health: 'healthy', cooldown_until: null });
    expect((await chat(token)).status).toBe(200);
    await t.app.get(UsageRecorder).flush();
    const errors = (await events([key.id])).map((e) => e.error_type);
    expect(errors).toContain('client_aborted');
  });

  it('answers 503 problem+json naming why when no key can serve, and passes the provider error through', async () => {
    await clearKeys('groq');
    const token = await accessToken();
    const none = await fetch(`${base}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'groq/llama-3.1-8b-instant', messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(none.status).toBe(503);
    expect(none.headers.get('content-type')).toMatch(/application\/problem\+json/);
    expect(await none.json()).toMatchObject({
      type: 'urn:keyward:problem:no-healthy-key',
      detail: /No active Groq key/,
    });

    await addKey({ provider: 'groq', name: 'only', key: groq.generateKey({ kind: 'revoked' }) });
    const dead = await fetch(`${base}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'groq/llama-3.1-8b-instant', messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(dead.status).toBe(401);
    const body = (await dead.json()) as { error: { message: string } };
    expect(body.error.message).toEqual(expect.any(String));
    const after = await fetch(`${base}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'llama-3.1-8b-instant', messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(after.status).toBe(503);
    expect(await after.json()).toMatchObject({ detail: /1 unhealthy/ });

    const models = await fetch(`${base}/v1/models`, { headers: { authorization: `Bearer ${token}` } });
    const list = (await models.json()) as { data: { id: string }[] };
    expect(list.data.map((m) => m.id)).toEqual(expect.arrayContaining(['openai/gpt-5', 'groq/llama-3.1-8b-instant']));
    expect(list.data.some((m) => m.id.startsWith('anthropic/'))).toBe(false);
  });

  it('never uses a key for a request that starts after its revoke returned, under traffic', async () => {
    await clearKeys('openai');
    const first = openai.generateKey();
    const a = await addKey({ provider: 'openai', name: 'A', key: first, priority: 1 });
    await addKey({ provider: 'openai', name: 'B', key: openai.generateKey(), priority: 2 });
    const token = await accessToken();
    let seq = 0;
    let revokedAtSeq = Infinity;
    let running = true;
    const worker = async () => {
      while (running) {
        const n = ++seq;
        const res = await fetch(`${base}/proxy/openai/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'gpt-5', user: String(n), messages: [{ role: 'user', content: 'hi' }] }),
        });
        expect(res.status).toBe(200);
        await res.arrayBuffer();
      }
    };
    const workers = Array.from({ length: 8 }, worker);
    await new Promise((r) => setTimeout(r, 150));
    await request(t.http).post(`/api/admin/api-keys/${a.id}/revoke`).set(auth()).expect(200);
    revokedAtSeq = seq;
    await new Promise((r) => setTimeout(r, 400));
    running = false;
    await Promise.all(workers);
    const seqOf = (r: (typeof openai.requests)[number]) => Number((r.body as { user?: string } | null)?.user);
    const afterRevoke = openai.requests.filter((r) => seqOf(r) > revokedAtSeq);
    expect(afterRevoke.length).toBeGreaterThan(10);
    expect(afterRevoke.filter((r) => r.key === first)).toEqual([]);
    expect(openai.requests.some((r) => r.key === first && seqOf(r) <= revokedAtSeq)).toBe(true);
  });

  it('counts exactly under 200 concurrent requests and refuses what would pass the limit with 429', async () => {
    await clearKeys('openai');
    const key = await addKey({
      provider: 'openai',
      name: 'limited',
      key: openai.generateKey({ kind: 'valid', usage: { input: 3, output: 2 } }),
      limit: { value: 120, unit: 'requests', period: 'daily' },
    });
    const token = await accessToken();
    const answers = await Promise.all(Array.from({ length: 200 }, () => chat(token)));
    const statuses = answers.map((r) => r.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(120);
    expect(statuses.filter((s) => s === 429)).toHaveLength(80);
    const refused = await answers.find((r) => r.status === 429)!.json();
    expect(refused).toMatchObject({ type: 'urn:keyward:problem:usage-exceeded', status: 429 });
    await Promise.all(answers.map((r) => r.arrayBuffer().catch(() => undefined)));

    await t.app.get(UsageRecorder).flush();
    // The counter is settled by the limits service, off the request path.
    await t.app.get(LimitsService).flush(3);
    const [row] = await t.dataSource.query(`SELECT usage_current FROM api_keys WHERE id = $1`, [key.id]);
    expect(Number(row.usage_current)).toBe(120);
    const [rollup] = await t.dataSource.query(
      `SELECT sum(requests)::int AS requests, sum(total_tokens)::int AS tokens FROM usage_rollups WHERE key_id = $1 AND bucket = 'day'`,
      [key.id],
    );
    expect(rollup).toEqual({ requests: 120, tokens: 600 });
    const view = await request(t.http).get(`/api/admin/api-keys/${key.id}`).set(auth()).expect(200);
    expect(view.body).toMatchObject({ status: 'over_limit', usage: { current: 120, limit: 120 } });
  });

  it('loses and double-counts nothing when a usage batch cannot be written, and says so', async () => {
    await clearKeys('openai');
    const key = await addKey({
      provider: 'openai',
      name: 'db trouble',
      key: openai.generateKey({ kind: 'valid', usage: { input: 10, output: 10 } }),
      limit: { value: 1_000_000, unit: 'tokens', period: 'monthly' },
    });
    const token = await accessToken();
    // The rollup table disappears: every batch transaction fails and rolls back whole.
    await t.dataSource.query(`ALTER TABLE usage_rollups RENAME TO usage_rollups_away`);
    try {
      const answers = await Promise.all(Array.from({ length: 20 }, () => chat(token)));
      expect(answers.map((r) => r.status)).toEqual(Array(20).fill(200));
      await Promise.all(answers.map((r) => r.arrayBuffer()));
      await t.app.get(UsageRecorder).flush();
      expect(t.app.get(UsageRecorder).queued).toBeGreaterThanOrEqual(20);
      const alerts = await t.dataSource.query(
        `SELECT kind, severity FROM alert_events WHERE kind = 'usage.write-failed'`,
      );
      expect(alerts).toEqual([{ kind: 'usage.write-failed', severity: 'critical' }]);
      expect(t.logs.text).toMatch(/Writing \d+ usage record\(s\) failed/);
    } finally {
      await t.dataSource.query(`ALTER TABLE usage_rollups_away RENAME TO usage_rollups`);
    }
    const deadline = Date.now() + 5000;
    while (t.app.get(UsageRecorder).queued > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(t.app.get(UsageRecorder).queued).toBe(0);
    const [row] = await t.dataSource.query(`SELECT usage_current FROM api_keys WHERE id = $1`, [key.id]);
    expect(Number(row.usage_current)).toBe(400);
    const [counted] = await t.dataSource.query(`SELECT count(*)::int AS events FROM usage_events WHERE key_id = $1`, [
      key.id,
    ]);
    expect(counted.events).toBe(20);
  });

  it('takes usage reports from applications that called a provider directly', async () => {
    const key = await addKey({ provider: 'groq', name: 'reported', key: groq.generateKey() });
    const token = await accessToken({ scopes: ['usage:report'] });
    const report = (body: Record<string, unknown>, bearer: string | null = token) =>
      request(t.http)
        .post('/api/usage')
        .set(bearer ? { Authorization: `Bearer ${bearer}` } : {})
        .send({ keyId: key.id, endpoint: '/chat/completions', success: true, ...body });
    const ok = await report({ model: 'llama-3.1-8b-instant', inputTokens: 1000, outputTokens: 500 }).expect(202);
    expect(ok.body).toMatchObject({ accepted: true, totalTokens: 1500, unpriced: false, cost: expect.any(Number) });
    await report({ inputTokens: 10, outputTokens: 5 }, null).expect(401);
    const bad = await report({ inputTokens: -1, outputTokens: 'many', timestamp: '2001-01-01T00:00:00Z' }).expect(400);
    expect(bad.body.errors.map((e: { field: string }) => e.field).sort()).toEqual(['inputTokens', 'outputTokens']);
    await report({ inputTokens: 1, outputTokens: 1, timestamp: '2001-01-01T00:00:00Z' }).expect(400);
    await report(
      { inputTokens: 1, outputTokens: 1 },
      await accessToken({ providers: ['openai'], scopes: ['usage:report'] }),
    ).expect(403);

    await t.app.get(UsageRecorder).flush();
    const [row] = await t.dataSource.query(
      `SELECT source, total_tokens, cost::float AS cost FROM usage_events WHERE key_id = $1`,
      [key.id],
    );
    expect(row).toEqual({ source: 'reported', total_tokens: 1500, cost: ok.body.cost });
  });

  it('limits an access token to its requests per minute and refuses bad tokens, scopes and addresses', async () => {
    await clearKeys('openai');
    await addKey({ provider: 'openai', name: 'plain', key: openai.generateKey() });
    const limited = await accessToken({ rateLimitPerMinute: 3 });
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await chat(limited)).status);
    expect(statuses).toEqual([200, 200, 200, 429]);
    const refused = await chat(limited);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(await refused.json()).toMatchObject({ type: 'urn:keyward:problem:rate-limited' });

    expect((await chat('kw_' + 'x'.repeat(43))).status).toBe(401);
    const noAuth = await fetch(`${base}/proxy/openai/v1/chat/completions`, { method: 'POST' });
    expect(noAuth.status).toBe(401);
    expect((await chat(await accessToken({ providers: ['groq'] }))).status).toBe(403);
    expect((await chat(await accessToken({ models: ['gpt-5-mini'] }))).status).toBe(403);
    expect((await chat(await accessToken({ allowedIps: ['10.0.0.0/8'] }))).status).toBe(403);
    expect((await chat(await accessToken({ allowedIps: ['127.0.0.0/8'] }))).status).toBe(200);
    const ungranted = await fetch(`${base}/proxy/openai/v1/files`, {
      headers: { authorization: `Bearer ${await accessToken()}` },
    });
    expect(ungranted.status).toBe(403);
    expect(await ungranted.json()).toMatchObject({ type: 'urn:keyward:problem:scope-not-granted' });
    const unknown = await fetch(`${base}/proxy/openai/v1/organization/users`, {
      headers: { authorization: `Bearer ${await accessToken()}` },
    });
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ type: 'urn:keyward:problem:unknown-endpoint' });
  });
});
