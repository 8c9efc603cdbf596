import OpenAI from 'openai';
import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import { startFakeProvider, type AnthropicFakeProvider, type OpenAiFakeProvider } from '../fake-providers';
import { RefusalLog } from '../../src/gateway/refusal-log';
import { UsageRecorder } from '../../src/usage/usage-recorder';
import { apiToken, startTestApp, type TestApp } from '../support/test-app';

/** A raw request: fetch and supertest normalise dot segments before sending, an attacker does not. */
function raw(
  port: number,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string,
): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers }),
      );
    });
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Gateway control: a token reaches only the endpoints, groups and models it may; client headers
 * cannot change the stored key's account or hurt its health; refusals are audited and counted.
 */
describe('Gateway control: scope, headers, refusals', () => {
  let t: TestApp;
  let port: number;
  let openai: OpenAiFakeProvider;
  let anthropic: AnthropicFakeProvider;
  let admin: string;
  const auth = () => ({ Authorization: `Bearer ${admin}` });

  async function addKey(body: Record<string, unknown>): Promise<{ id: string }> {
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

  beforeAll(async () => {
    [openai, anthropic] = await Promise.all([startFakeProvider('openai'), startFakeProvider('anthropic')]);
    process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL = openai.baseUrl;
    process.env.KEYWARD_PROVIDER_ANTHROPIC_BASE_URL = anthropic.baseUrl;
    // The bad-token flood below must not trip the per-address throttle (it has its own test).
    t = await startTestApp({ KEYWARD_USAGE_FLUSH_MS: '50', KEYWARD_FAILED_TOKEN_LIMIT: '100000' });
    await new Promise<void>((resolve) => t.http.listen(0, '127.0.0.1', resolve));
    port = (t.http.address() as AddressInfo).port;
    admin = await apiToken(t.http);
    await addKey({ provider: 'openai', name: 'main', key: openai.generateKey(), priority: 1 });
    await addKey({ provider: 'openai', name: 'backup', key: openai.generateKey(), priority: 2 });
    await addKey({ provider: 'anthropic', name: 'main', key: anthropic.generateKey() });
  }, 30_000);
  afterAll(async () => {
    await t.close();
    await Promise.all([openai.close(), anthropic.close()]);
    delete process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL;
    delete process.env.KEYWARD_PROVIDER_ANTHROPIC_BASE_URL;
  });

  const chatBody = JSON.stringify({ model: 'gpt-5', messages: [{ role: 'user', content: 'hi' }] });

  it.each([
    ['GET', '/proxy/openai/v1/models/%2E%2E/files', 404],
    ['GET', '/proxy/openai/v1/models/%2e%2e/files', 404],
    ['GET', '/proxy/openai/v1/models/%252E%252E/files', 404],
    ['GET', '/proxy/openai/v1/models/%2E%2E%2Forganization%2Fusers', 404],
    ['POST', '/proxy/openai/v1/chat/completions/../../../../v1/organization/users', 404],
    ['POST', '/proxy/openai/v1/chat/completions/..%2F..%2Forganization', 404],
    ['GET', '/proxy/openai/v1/./models', 404],
    ['GET', '/proxy/openai/v1/models/.%2E/files', 404],
    ['GET', '/proxy/openai/v1\\organization\\users', 404],
    ['GET', '/proxy/openai/v1/%5Corganization', 404],
    ['GET', '/proxy/openai//v1/models', 404],
    ['GET', '/proxy/openai/v1//models', 404],
    ['GET', '/proxy/openai/v1/models/', 404],
    ['GET', '/proxy/openai/v1/files', 403],
    ['GET', '/proxy/openai/v1/batches', 403],
    ['GET', '/proxy/openai/v1/organization/users', 404],
    ['POST', '/proxy/openai/v1/organization/admin_api_keys', 404],
    ['GET', '/proxy/openai/v1/organization/costs', 404],
    ['DELETE', '/proxy/openai/v1/chat/completions', 405],
    ['PUT', '/proxy/openai/v1/chat/completions', 405],
    ['PATCH', '/proxy/openai/v1/models', 405],
    ['GET', '/proxy/anthropic/v1/organizations/users', 404],
    ['GET', '/proxy/anthropic/v1/messages/..%2F..%2Forganizations', 404],
  ])('refuses %s %s with %i before it reaches the provider', async (method, path, status) => {
    const token = await accessToken();
    const before = openai.requests.length + anthropic.requests.length;
    const res = await raw(
      port,
      method,
      path,
      { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      method === 'POST' || method === 'PUT' ? chatBody : undefined,
    );
    expect(res.status).toBe(status);
    expect(JSON.parse(res.body)).toMatchObject({ status, type: expect.stringMatching(/^urn:keyward:problem:/) });
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(openai.requests.length + anthropic.requests.length).toBe(before);
  });

  it('lets a token with the files grant reach the files endpoints, and only those data groups', async () => {
    const token = await accessToken({ scopes: ['files'] });
    const before = openai.requests.length;
    const files = await raw(port, 'GET', '/proxy/openai/v1/files', { authorization: `Bearer ${token}` });
    expect(files.status).not.toBe(403);
    expect(openai.requests.slice(before).map((r) => `${r.method} ${r.path}`)).toEqual(['GET /v1/files']);
    const batches = await raw(port, 'GET', '/proxy/openai/v1/batches', { authorization: `Bearer ${token}` });
    expect(batches.status).toBe(403);
    expect(openai.requests.length).toBe(before + 1);
  });

  it('still serves the listed endpoints through the official SDK', async () => {
    const client = new OpenAI({ apiKey: await accessToken(), baseURL: `http://127.0.0.1:${port}/proxy/openai/v1` });
    const completion = await client.chat.completions.create({
      model: 'gpt-5',
      messages: [{ role: 'user', content: 'hi' }],
    });
    expect(completion.choices[0].message.content).toEqual(expect.any(String));
    const models = await client.models.list();
    expect(models.data.length).toBeGreaterThan(0);
    const model = await client.models.retrieve('gpt-5');
    expect(model.id).toBe('gpt-5');
  });

  it('drops client credentials and account headers: 20 calls with OpenAI-Organization leave every key healthy', async () => {
    const token = await accessToken();
    const before = openai.requests.length;
    for (let i = 0; i < 20; i++) {
      const res = await raw(
        port,
        'POST',
        '/proxy/openai/v1/chat/completions',
        {
          authorization: `Bearer ${token}`,
          'content-type': 'application/json',
          'openai-organization': 'org-someone-else',
          'openai-project': 'proj_someone_else',
          cookie: 'session=stolen',
          'x-api-key': 'sk-not-ours',
          'x-custom-header': 'anything',
        },
        chatBody,
      );
      expect(res.status).toBe(200);
    }
    const seen = openai.requests.slice(before);
    expect(seen).toHaveLength(20);
    for (const r of seen) {
      expect(Object.keys(r.headers)).not.toEqual(
        expect.arrayContaining(['openai-organization', 'openai-project', 'cookie', 'x-api-key', 'x-custom-header']),
      );
      for (const name of ['openai-organization', 'openai-project', 'cookie', 'x-api-key', 'x-custom-header']) {
        expect(r.headers[name]).toBeUndefined();
      }
      expect(r.headers['accept-encoding']).toBe('identity');
    }
    const health = await t.dataSource.query(`SELECT DISTINCT health FROM api_keys WHERE provider = 'openai'`);
    expect(health).toEqual([{ health: 'healthy' }]);
  });

  it('fails closed: a model-limited token cannot slip another model past in a text/plain or multipart body', async () => {
    const token = await accessToken({ models: ['gpt-5-mini'] });
    const before = openai.requests.length;
    const plain = await raw(
      port,
      'POST',
      '/proxy/openai/v1/chat/completions',
      { authorization: `Bearer ${token}`, 'content-type': 'text/plain' },
      chatBody,
    );
    expect(plain.status).toBe(403);
    expect(JSON.parse(plain.body)).toMatchObject({ type: 'urn:keyward:problem:model-not-allowed' });

    const boundary = 'kwboundary';
    const form = (fields: Record<string, string>) =>
      Object.entries(fields)
        .map(([k, v]) => `--${boundary}\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`)
        .join('') + `--${boundary}--\r\n`;
    const forms: Record<string, string>[] = [
      { prompt: 'no model here' },
      { model: 'whisper-1', prompt: 'wrong model' },
    ];
    for (const fields of forms) {
      const res = await raw(
        port,
        'POST',
        '/proxy/openai/v1/audio/transcriptions',
        { authorization: `Bearer ${token}`, 'content-type': `multipart/form-data; boundary=${boundary}` },
        form(fields),
      );
      expect(res.status).toBe(403);
    }
    expect(openai.requests.length).toBe(before);
  });

  it('audits refusals in folded entries with counts, and counts Keyward’s own 429s in usage', async () => {
    for (let i = 0; i < 30; i++) {
      await raw(
        port,
        'POST',
        '/proxy/openai/v1/chat/completions',
        { authorization: `Bearer kw_${'y'.repeat(43)}` },
        chatBody,
      );
    }
    const limited = await accessToken({ rateLimitPerMinute: 1 });
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await raw(
        port,
        'POST',
        '/proxy/openai/v1/chat/completions',
        { authorization: `Bearer ${limited}`, 'content-type': 'application/json' },
        chatBody,
      );
      statuses.push(res.status);
    }
    expect(statuses).toEqual([200, 429, 429, 429]);
    await t.app.get(RefusalLog).flush();
    const entries = await t.dataSource.query(
      `SELECT reason, details FROM audit_log WHERE action = 'gateway.refused' ORDER BY seq`,
    );
    const bad = entries.filter((e: { reason: string }) => e.reason === 'token-refused');
    expect(bad.reduce((n: number, e: { details: { count: number } }) => n + e.details.count, 0)).toBe(30);
    expect(bad.length).toBeLessThanOrEqual(2); // one per minute; the loop may straddle a minute
    expect(bad[0].details.hint).toBe(`kw_…yyyy`);
    const rate = entries.filter((e: { reason: string }) => e.reason === 'rate-limited');
    expect(rate.reduce((n: number, e: { details: { count: number } }) => n + e.details.count, 0)).toBe(3);

    await t.app.get(UsageRecorder).flush();
    const own = await t.dataSource.query(
      `SELECT count(*)::int AS n FROM usage_events WHERE key_id IS NULL AND status = 429 AND error_type = 'rate_limited'`,
    );
    expect(own).toEqual([{ n: 3 }]);

    const page = await request(t.http).get('/api/admin/audit?action=gateway.refused').set(auth()).expect(200);
    expect(page.body.entries.length).toBeGreaterThan(0);
  });

  it('skips a key that cannot be decrypted and serves from the next, with an alert', async () => {
    const broken = await addKey({ provider: 'anthropic', name: 'broken', key: anthropic.generateKey(), priority: 0 });
    // As if its master key version were gone: the envelope names a version the keyring lacks.
    await t.dataSource.query(`UPDATE api_keys SET secret_version = secret_version + 100 WHERE id = $1`, [broken.id]);
    const token = await accessToken();
    const res = await raw(
      port,
      'POST',
      '/proxy/anthropic/v1/messages',
      { 'x-api-key': token, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
      JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] }),
    );
    expect(res.status).toBe(200);
    // The alert is written off the request path.
    let alerts: { kind: string }[] = [];
    for (let i = 0; i < 40 && alerts.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 50));
      alerts = await t.dataSource.query(`SELECT kind FROM alert_events WHERE key_id = $1`, [broken.id]);
    }
    expect(alerts).toEqual([{ kind: 'key.undecryptable' }]);
  });

  it('does not let one provider blip on the only key turn into a wall of 503s', async () => {
    const keys = await request(t.http).get('/api/admin/api-keys?provider=openai&active=true').set(auth());
    if (!keys.body.keys) throw new Error(`list answered ${keys.status}: ${JSON.stringify(keys.body)}`);
    for (const key of keys.body.keys) {
      await request(t.http).post(`/api/admin/api-keys/${key.id}/revoke`).set(auth()).expect(200);
    }
    const only = openai.generateKey({ kind: 'failing', status: 500 });
    await addKey({ provider: 'openai', name: 'only', key: only });
    const token = await accessToken();
    const call = () =>
      raw(
        port,
        'POST',
        '/proxy/openai/v1/chat/completions',
        { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        chatBody,
      );
    expect((await call()).status).toBe(500);
    // The provider is back at once; so must the key be.
    openai.setKey(only, { kind: 'valid' });
    const statuses = [];
    for (let i = 0; i < 20; i++) statuses.push((await call()).status);
    expect(statuses).toEqual(Array(20).fill(200));
  });

  it('masks anything that could be the key in a provider error passed to the client', async () => {
    const dead = openai.generateKey({ kind: 'revoked' });
    const iso = await startTestApp({ KEYWARD_FEATURE_FAILOVER: 'false' });
    try {
      const owner = await apiToken(iso.http);
      await request(iso.http)
        .post('/api/admin/api-keys')
        .set('Authorization', `Bearer ${owner}`)
        .send({ provider: 'openai', name: 'dead', key: dead })
        .expect(201);
      const { token } = (
        await request(iso.http)
          .post('/api/admin/access-tokens')
          .set('Authorization', `Bearer ${owner}`)
          .send({ name: 'a' })
      ).body;
      const res = await request(iso.http)
        .post('/proxy/openai/v1/chat/completions')
        .set('Authorization', `Bearer ${token}`)
        .send({ model: 'gpt-5', messages: [{ role: 'user', content: 'hi' }] });
      expect(res.status).toBe(401);
      expect(res.text).toContain('[redacted]');
      expect(res.text).not.toContain(dead);
      expect(res.text).not.toContain(dead.slice(0, 8));
      expect(res.text).not.toContain(dead.slice(-12));
    } finally {
      await iso.close();
    }
  });
});
