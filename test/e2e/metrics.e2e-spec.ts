import type { AddressInfo } from 'node:net';
import request from 'supertest';
import { UsageRecorder } from '../../src/usage/usage-recorder';
import { startFakeProvider, type OpenAiFakeProvider } from '../fake-providers';
import { apiToken, startTestApp, type TestApp } from '../support/test-app';

/** One sample of the exposition text: `name{labels} value`. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = m[2] ? m[2].split(',') : [];
    if (wanted.every((w) => have.includes(w)) && have.length === wanted.length) return Number(m[3]);
  }
  return undefined;
}

async function listen(t: TestApp): Promise<string> {
  await new Promise<void>((resolve) => t.app.getHttpServer().listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(t.app.getHttpServer().address() as AddressInfo).port}`;
}

/** GET /metrics as Prometheus scrapes it, after real gateway traffic. */
describe('Metrics', () => {
  let t: TestApp;
  let base: string;
  let openai: OpenAiFakeProvider;
  let admin: string;
  let token: string;
  const keyIds: string[] = [];

  beforeAll(async () => {
    openai = await startFakeProvider('openai');
    process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL = openai.baseUrl;
    t = await startTestApp({ KEYWARD_USAGE_FLUSH_MS: '20', KEYWARD_TRUST_PROXY: 'loopback' });
    base = await listen(t);
    admin = await apiToken(t.http);
    for (const name of ['a', 'b', 'c']) {
      const res = await request(t.http)
        .post('/api/admin/api-keys')
        .set('Authorization', `Bearer ${admin}`)
        .send({ provider: 'openai', name, key: openai.generateKey() })
        .expect(201);
      keyIds.push(res.body.id);
    }
    token = (
      await request(t.http)
        .post('/api/admin/access-tokens')
        .set('Authorization', `Bearer ${admin}`)
        .send({ name: 'metrics-app' })
        .expect(201)
    ).body.token;
    for (let i = 0; i < 5; i++) {
      const res = await fetch(`${base}/proxy/openai/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-5', messages: [{ role: 'user', content: 'hi' }] }),
      });
      expect(res.status).toBe(200);
      await res.text();
    }
    await t.app.get(UsageRecorder).flush();
  }, 60_000);
  afterAll(async () => {
    await t.close();
    await openai.close();
    delete process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL;
  });

  const scrape = () => request(t.http).get('/metrics').expect(200);

  it('answers in the Prometheus text format with process metrics and every Keyward metric declared', async () => {
    const res = await scrape();
    expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(res.headers['cache-control']).toBe('no-store');
    for (const [name, type] of [
      ['keyward_gateway_request_duration_seconds', 'histogram'],
      ['keyward_gateway_requests_total', 'counter'],
      ['keyward_gateway_failovers_total', 'counter'],
      ['keyward_limits_hit_total', 'counter'],
      ['keyward_key_health', 'gauge'],
      ['keyward_usage_queue_depth', 'gauge'],
      ['keyward_usage_write_lag_seconds', 'gauge'],
      ['process_cpu_user_seconds_total', 'counter'],
      ['nodejs_heap_size_used_bytes', 'gauge'],
    ]) {
      expect(res.text).toContain(`# TYPE ${name} ${type}`);
    }
    for (const scope of ['key', 'token', 'rate'])
      expect(sample(res.text, 'keyward_limits_hit_total', { scope })).toBe(0);
    // Nothing secret in it.
    expect(res.text).not.toMatch(/sk-|kw_/);
  });

  it('counts keys by health from the database at scrape time', async () => {
    let text = (await scrape()).text;
    expect(sample(text, 'keyward_key_health', { provider: 'openai', state: 'healthy' })).toBe(3);
    expect(sample(text, 'keyward_key_health', { provider: 'openai', state: 'unhealthy' })).toBe(0);
    expect(sample(text, 'keyward_key_health', { provider: 'anthropic', state: 'healthy' })).toBe(0);

    await t.dataSource.query(`UPDATE api_keys SET health = 'unhealthy' WHERE id = $1`, [keyIds[0]]);
    await t.dataSource.query(`UPDATE api_keys SET cooldown_until = now() + interval '1 minute' WHERE id = $1`, [
      keyIds[1],
    ]);
    text = (await scrape()).text;
    expect(sample(text, 'keyward_key_health', { provider: 'openai', state: 'healthy' })).toBe(1);
    expect(sample(text, 'keyward_key_health', { provider: 'openai', state: 'unhealthy' })).toBe(1);
    expect(sample(text, 'keyward_key_health', { provider: 'openai', state: 'cooling_down' })).toBe(1);
    await t.dataSource.query(`UPDATE api_keys SET health = 'healthy', cooldown_until = NULL WHERE id = ANY($1)`, [
      keyIds,
    ]);
  });

  it('shows the usage queue and how long its oldest record has waited', async () => {
    let text = (await scrape()).text;
    expect(sample(text, 'keyward_usage_queue_depth')).toBe(0);
    expect(sample(text, 'keyward_usage_write_lag_seconds')).toBe(0);

    // A record made 3 s ago and not yet written (the recorder flushes after its interval).
    const recorder = t.app.get(UsageRecorder);
    recorder.record({
      timestamp: new Date(Date.now() - 3000),
      keyId: keyIds[2],
      provider: 'openai',
      accessTokenId: null,
      endpoint: '/v1/chat/completions',
      model: 'gpt-5',
      inputTokens: 1,
      outputTokens: 1,
      cachedInputTokens: 0,
      totalTokens: 2,
      cost: 0,
      unpriced: false,
      latencyMs: 5,
      success: true,
      errorType: null,
      status: 200,
      attempt: 1,
      stream: false,
      source: 'reported',
    });
    text = (await scrape()).text;
    expect(sample(text, 'keyward_usage_queue_depth')).toBe(1);
    expect(sample(text, 'keyward_usage_write_lag_seconds')).toBeGreaterThanOrEqual(3);
    await recorder.flush();
    text = (await scrape()).text;
    expect(sample(text, 'keyward_usage_queue_depth')).toBe(0);
    expect(sample(text, 'keyward_usage_write_lag_seconds')).toBe(0);
  });

  it('answers only this machine when no token is set', async () => {
    // Through a proxy on this machine (KEYWARD_TRUST_PROXY=loopback), the client is the remote one.
    const remote = await request(t.http).get('/metrics').set('X-Forwarded-For', '203.0.113.7');
    expect(remote.status).toBe(403);
    expect(remote.headers['content-type']).toMatch(/application\/problem\+json/);
    expect(remote.body.detail).toContain('KEYWARD_METRICS_TOKEN');
    await request(t.http).get('/metrics').set('X-Forwarded-For', '127.0.0.1').expect(200);
  });

  it('counts gateway calls by provider and outcome, with their latency', async () => {
    const text = (await scrape()).text;
    expect(sample(text, 'keyward_gateway_requests_total', { provider: 'openai', outcome: 'success' })).toBe(5);
    expect(
      sample(text, 'keyward_gateway_request_duration_seconds_count', { provider: 'openai', outcome: 'success' }),
    ).toBe(5);
    expect(
      sample(text, 'keyward_gateway_request_duration_seconds_bucket', {
        provider: 'openai',
        outcome: 'success',
        le: '+Inf',
      }),
    ).toBe(5);
  });

  it('counts failovers and limits hit', async () => {
    const dead = openai.generateKey({ kind: 'revoked' });
    await request(t.http)
      .post('/api/admin/api-keys')
      .set('Authorization', `Bearer ${admin}`)
      .send({ provider: 'openai', name: 'dead', key: dead, priority: 0 })
      .expect(201);
    const before = sample((await scrape()).text, 'keyward_gateway_failovers_total', { provider: 'openai' }) ?? 0;
    const res = await fetch(`${base}/proxy/openai/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-5', messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(res.status).toBe(200);
    expect(sample((await scrape()).text, 'keyward_gateway_failovers_total', { provider: 'openai' })).toBe(before + 1);

    const limited = (
      await request(t.http)
        .post('/api/admin/access-tokens')
        .set('Authorization', `Bearer ${admin}`)
        .send({ name: 'limited', rateLimitPerMinute: 1 })
        .expect(201)
    ).body.token;
    for (let i = 0; i < 2; i++) {
      await fetch(`${base}/proxy/openai/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${limited}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-5', messages: [{ role: 'user', content: 'hi' }] }),
      }).then((r) => r.text());
    }
    expect(sample((await scrape()).text, 'keyward_limits_hit_total', { scope: 'rate' })).toBe(1);
  });
});

describe('Metrics behind KEYWARD_METRICS_TOKEN', () => {
  let t: TestApp;
  const secret = 'metrics-token-for-prometheus';
  beforeAll(async () => {
    t = await startTestApp({ KEYWARD_METRICS_TOKEN: secret });
  }, 60_000);
  afterAll(() => t.close());

  it('needs the bearer token, even on this machine', async () => {
    const none = await request(t.http).get('/metrics').expect(401);
    expect(none.headers['content-type']).toMatch(/application\/problem\+json/);
    await request(t.http).get('/metrics').set('Authorization', 'Bearer not-the-token').expect(401);
    const ok = await request(t.http).get('/metrics').set('Authorization', `Bearer ${secret}`).expect(200);
    expect(ok.text).toContain('# TYPE keyward_key_health gauge');
  });
});
