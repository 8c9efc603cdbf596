import request from 'supertest';
import {
  startFakeProvider,
  type AnthropicFakeProvider,
  type GroqFakeProvider,
  type OpenAiFakeProvider,
  type OpenRouterFakeProvider,
} from '../fake-providers';
import { RotationScheduler } from '../../src/rotation/rotation.scheduler';
import { apiToken, ConsoleSession, startTestApp, type TestApp } from '../support/test-app';

/**
 * Stores keys whose secrets the test knows, drives every key route of the API and the console
 * and the audit log, and then looks for those secrets — raw, base64, base64url and hex — in
 * every response body and header, every log line and every database row.
 */
describe('Secrets never leak', () => {
  let t: TestApp;
  let openai: OpenAiFakeProvider;
  let anthropic: AnthropicFakeProvider;
  let groq: GroqFakeProvider;
  let openrouter: OpenRouterFakeProvider;
  let token: string;
  const secrets: string[] = [];
  const seen: { what: string; text: string }[] = [];

  /** Every response goes through here so the final check sees it. */
  function collect(what: string, res: request.Response): request.Response {
    seen.push({ what, text: `${JSON.stringify(res.headers)}\n${res.text ?? ''}` });
    return res;
  }
  const api = async (method: 'get' | 'post' | 'put' | 'patch' | 'delete', url: string, body?: object) =>
    collect(
      `${method.toUpperCase()} ${url}`,
      await request(t.http)[method](url).set('Authorization', `Bearer ${token}`).send(body),
    );
  const remember = (secret: string) => {
    secrets.push(secret);
    return secret;
  };

  beforeAll(async () => {
    [openai, anthropic, groq, openrouter] = await Promise.all([
      startFakeProvider('openai'),
      startFakeProvider('anthropic'),
      startFakeProvider('groq'),
      startFakeProvider('openrouter'),
    ]);
    process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL = openai.baseUrl;
    process.env.KEYWARD_PROVIDER_ANTHROPIC_BASE_URL = anthropic.baseUrl;
    process.env.KEYWARD_PROVIDER_GROQ_BASE_URL = groq.baseUrl;
    process.env.KEYWARD_PROVIDER_OPENROUTER_BASE_URL = openrouter.baseUrl;
    // Debug logging: the most a misconfigured production could print.
    t = await startTestApp({ LOG_LEVEL: 'debug' });
    token = await apiToken(t.http);
  });
  afterAll(async () => {
    await t.close();
    await Promise.all([openai.close(), anthropic.close(), groq.close(), openrouter.close()]);
    for (const id of ['OPENAI', 'ANTHROPIC', 'GROQ', 'OPENROUTER'])
      delete process.env[`KEYWARD_PROVIDER_${id}_BASE_URL`];
  });

  it('shows no secret in any response, page, header, log line, audit entry or database row', async () => {
    const management = remember(openrouter.generateManagementKey());
    const created: Record<string, { id: string }> = {};
    for (const [provider, secret] of [
      ['openai', remember(openai.generateKey())],
      ['anthropic', remember(anthropic.generateKey())],
      ['groq', remember(groq.generateKey())],
      ['openrouter', remember(openrouter.generateKey())],
    ] as const) {
      const res = await api('post', '/api/admin/api-keys', {
        provider,
        name: `${provider} leak test`,
        key: secret,
        ...(provider === 'openrouter' ? { managementKey: management, externalId: 'f'.repeat(64) } : {}),
        limit: { value: 1000, unit: 'requests', period: 'daily' },
      });
      expect(res.status).toBe(201);
      created[provider] = res.body;
    }
    const { openai: o, anthropic: a, groq: g, openrouter: r } = created;

    // Refusals that are tempted to quote the input: a duplicate and a wrong format.
    expect(
      (await api('post', '/api/admin/api-keys', { provider: 'openai', name: 'dup', key: secrets[1] })).status,
    ).toBe(400);
    expect((await api('post', '/api/admin/api-keys', { provider: 'groq', name: 'fmt', key: secrets[1] })).status).toBe(
      400,
    );
    expect((await api('post', '/api/admin/providers/openai/verify-key', { key: secrets[3] })).status).toBe(400);

    await api('get', '/api/admin/api-keys');
    await api('get', '/api/admin/api-keys?q=leak&sort=name');
    for (const key of [o, a, g, r]) {
      await api('get', `/api/admin/api-keys/${key.id}`);
      expect((await api('post', `/api/admin/api-keys/${key.id}/verify`)).status).toBe(200);
      await api('patch', `/api/admin/api-keys/${key.id}`, { name: 'renamed', priority: 3 });
      await api('put', `/api/admin/api-keys/${key.id}/limits`, { value: 5, unit: 'usd', period: 'monthly' });
    }
    // A provider that rejects the key: its error body must not carry the key back to us.
    openai.setKey(secrets[1], { kind: 'revoked' });
    expect((await api('post', `/api/admin/api-keys/${o.id}/verify`)).body.valid).toBe(false);

    const rotatedIn = remember(openai.generateKey());
    expect((await api('put', `/api/admin/api-keys/${o.id}/rotate`, { key: rotatedIn })).status).toBe(200);
    expect((await api('post', `/api/admin/api-keys/${o.id}/verify`)).body.valid).toBe(true);
    expect((await api('put', `/api/admin/api-keys/${r.id}/rotate`, { gracePeriodSeconds: 0 })).status).toBe(200);
    remember(openrouter.mintedKeys.at(-1)!);
    await t.app.get(RotationScheduler).runOnce();
    await api('get', `/api/admin/api-keys/${o.id}/rotations`);
    await api('get', `/api/admin/api-keys/${r.id}/rotations`);
    expect((await api('post', `/api/admin/api-keys/${g.id}/revoke`)).status).toBe(200);
    expect((await api('post', `/api/admin/api-keys/${g.id}/verify`)).status).toBe(409);
    expect((await api('delete', `/api/admin/api-keys/${g.id}`)).status).toBe(204);
    // Applications through the gateway, plain and streaming, success and a provider refusal.
    const appToken = (await api('post', '/api/admin/access-tokens', { name: 'leak app' })).body.token as string;
    const viaGateway = (path: string, body: object, headers: Record<string, string>) =>
      request(t.http).post(path).set(headers).send(body);
    collect(
      'gateway openai',
      await viaGateway(
        '/proxy/openai/v1/chat/completions',
        { model: 'gpt-5', messages: [{ role: 'user', content: 'hi' }] },
        { Authorization: `Bearer ${appToken}` },
      ),
    );
    collect(
      'gateway anthropic stream',
      await viaGateway(
        '/proxy/anthropic/v1/messages',
        { model: 'claude-haiku-4-5', max_tokens: 16, stream: true, messages: [{ role: 'user', content: 'hi' }] },
        { 'x-api-key': appToken, 'anthropic-version': '2023-06-01' },
      ),
    );
    anthropic.setKey(secrets[2], { kind: 'revoked' });
    const refused = await viaGateway(
      '/proxy/anthropic/v1/messages',
      { model: 'claude-haiku-4-5', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] },
      { 'x-api-key': appToken, 'anthropic-version': '2023-06-01' },
    );
    expect(refused.status).toBe(401);
    collect('gateway refused', refused);
    await api('get', '/api/admin/audit?pageSize=200');
    await api('get', `/api/admin/audit?target=${o.id}`);

    // The console: pages, fragments and a refused form.
    const s = new ConsoleSession(t.http);
    await s.signIn();
    for (const url of [
      '/admin/keys',
      '/admin/keys?q=renamed',
      `/admin/keys/${o.id}`,
      `/admin/keys/${r.id}`,
      '/admin/keys/new',
    ]) {
      collect(url, await s.page(url));
    }
    collect('htmx list', await s.htmx('get', '/admin/keys?sort=name'));
    collect('htmx verify', await s.htmx('post', `/admin/keys/${a.id}/verify`));
    collect('usage page', await s.page('/admin/usage'));
    collect('tokens page', await s.page('/admin/access-tokens'));
    collect('form duplicate', await s.post('/admin/keys', { provider: 'anthropic', name: 'dup', key: secrets[2] }));
    collect('form bad format', await s.post('/admin/keys', { provider: 'openai', name: 'fmt', key: secrets[2] }));
    collect('audit page', await s.page('/admin/audit'));

    expect(seen.length).toBeGreaterThan(40);
    expect(secrets.length).toBe(7);
    const forms = (secret: string) => [
      secret,
      Buffer.from(secret).toString('base64'),
      Buffer.from(secret).toString('base64url'),
      Buffer.from(secret).toString('hex'),
    ];
    const leaks: string[] = [];
    for (const secret of secrets) {
      for (const form of forms(secret)) {
        for (const { what, text } of seen) if (text.includes(form)) leaks.push(`${what} contains a secret`);
        if (t.logs.text.includes(form)) leaks.push('a log line contains a secret');
      }
    }

    // Rows: only envelopes, which must not hold the plaintext either.
    const rows = await t.dataSource.query(`
      SELECT 'api_keys' AS t, row_to_json(k)::text AS text FROM api_keys k
      UNION ALL SELECT 'key_rotations', row_to_json(r)::text FROM key_rotations r
      UNION ALL SELECT 'audit_log', row_to_json(a)::text FROM audit_log a`);
    const envelopes = await t.dataSource.query(
      `SELECT secret_ciphertext, management_ciphertext FROM api_keys WHERE secret_ciphertext IS NOT NULL`,
    );
    expect(envelopes.length).toBe(3);
    for (const secret of secrets) {
      for (const form of forms(secret)) {
        for (const row of rows as { t: string; text: string }[]) if (row.text.includes(form)) leaks.push(`${row.t}`);
      }
      for (const e of envelopes as { secret_ciphertext: Buffer; management_ciphertext: Buffer | null }[]) {
        if (e.secret_ciphertext.includes(secret) || e.management_ciphertext?.includes(secret)) leaks.push('envelope');
      }
    }
    expect(leaks).toEqual([]);
    // The test itself can fail: the secrets did travel to the fakes, in the clear, as they must.
    expect(openai.requests.some((req) => req.key === rotatedIn)).toBe(true);
  });
});
