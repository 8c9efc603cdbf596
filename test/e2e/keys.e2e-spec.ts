import * as path from 'node:path';
import request from 'supertest';
import { startFakeProvider, type OpenAiFakeProvider, type OpenRouterFakeProvider } from '../fake-providers';
import { RotationScheduler } from '../../src/rotation/rotation.scheduler';
import { apiToken, createUser, startTestApp, type TestApp } from '../support/test-app';

const fixtures = path.resolve(__dirname, '../fixtures/plugins');

interface KeyBody {
  id: string;
  key: string;
  [field: string]: unknown;
}

describe('Key vault API: add, list, verify, rotate, revoke, limits', () => {
  let t: TestApp;
  let openai: OpenAiFakeProvider;
  let openrouter: OpenRouterFakeProvider;
  let token: string;
  const tokens: Record<string, string> = {};
  const as = (role: string) => ({ Authorization: `Bearer ${role === 'owner' ? token : tokens[role]}` });
  const auth = () => as('owner');

  async function addKey(body: Record<string, unknown>, role = 'owner'): Promise<KeyBody> {
    const res = await request(t.http).post('/api/admin/api-keys').set(as(role)).send(body);
    if (res.status !== 201) throw new Error(`create answered ${res.status}: ${JSON.stringify(res.body)}`);
    return res.body as KeyBody;
  }

  beforeAll(async () => {
    openai = await startFakeProvider('openai');
    openrouter = await startFakeProvider('openrouter');
    process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL = openai.baseUrl;
    process.env.KEYWARD_PROVIDER_OPENROUTER_BASE_URL = openrouter.baseUrl;
    process.env.KEYWARD_PROVIDER_ORG_LLM_BASE_URL = openai.baseUrl;
    t = await startTestApp({ KEYWARD_PLUGINS: path.join(fixtures, 'org-llm') });
    token = await apiToken(t.http);
    for (const role of ['admin', 'operator', 'auditor']) {
      const user = await createUser(t.http, token, role);
      tokens[role] = await apiToken(t.http, user.email, user.password);
    }
  });
  afterAll(async () => {
    await t.close();
    await openai.close();
    await openrouter.close();
    delete process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL;
    delete process.env.KEYWARD_PROVIDER_OPENROUTER_BASE_URL;
    delete process.env.KEYWARD_PROVIDER_ORG_LLM_BASE_URL;
  });

  it('adds a key and answers the spec APIKey with the secret masked', async () => {
    const secret = openai.generateKey();
    const expiresAt = new Date(Date.now() + 90 * 86_400_000).toISOString();
    const res = await request(t.http)
      .post('/api/admin/api-keys')
      .set(auth())
      .send({
        provider: 'openai',
        name: 'Production OpenAI',
        key: secret,
        expiresAt,
        rotationSchedule: '0 3 * * 1',
        priority: 10,
        weight: 3,
        limit: { value: 1000000, unit: 'tokens', period: 'monthly' },
      })
      .expect(201);
    expect(res.body).toMatchObject({
      id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      provider: 'openai',
      name: 'Production OpenAI',
      key: `${secret.slice(0, secret.indexOf('-', 3) + 1)}…${secret.slice(-4)}`,
      active: true,
      status: 'active',
      expiresAt,
      createdAt: expect.any(String),
      rotationSchedule: '0 3 * * 1',
      rotationScheduleText: 'At 03:00, only on Monday (UTC)',
      nextRotationAt: expect.any(String),
      priority: 10,
      weight: 3,
      usage: { current: 0, limit: 1000000, unit: 'tokens', period: 'monthly', resetAt: expect.any(String) },
    });
    const now = new Date();
    expect(res.body.usage.resetAt).toBe(
      new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1)).toISOString(),
    );
    expect(new Date(res.body.nextRotationAt).getUTCDay()).toBe(1);
    expect(JSON.stringify(res.body)).not.toContain(secret);

    const got = await request(t.http).get(`/api/admin/api-keys/${res.body.id}`).set(auth()).expect(200);
    expect(got.body).toEqual(res.body);
  });

  it('refuses each bad input with a field error that never echoes the key', async () => {
    const stored = openai.generateKey();
    await addKey({ provider: 'openai', name: 'Stored once', key: stored });
    const groqLike = `gsk_${'A'.repeat(52)}`;
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ provider: 'nope', name: 'x', key: stored }, 'provider', /unknown provider; known providers: .*openai/],
      [{ provider: 'openai', name: 'x', key: groqLike }, 'key', /^expected .*sk-/],
      [{ provider: 'org-llm', name: 'x', key: `sk-${'b'.repeat(30)}` }, 'organizationId', /need an organization id/],
      [
        { provider: 'openai', name: 'x', key: openai.generateKey(), expiresAt: '2020-01-01T00:00:00Z' },
        'expiresAt',
        /must be in the future/,
      ],
      [{ provider: 'openai', name: 'x', key: openai.generateKey(), expiresAt: 'tomorrow' }, 'expiresAt', /ISO 8601/],
      [
        { provider: 'openai', name: 'x', key: openai.generateKey(), rotationSchedule: 'every monday' },
        'rotationSchedule',
        /cron expression/,
      ],
      [{ provider: 'openai', name: 'Copy', key: stored }, 'key', /already stored as "Stored once"/],
      [
        { provider: 'groq', name: 'x', key: `gsk_${'G'.repeat(52)}`, managementKey: 'gsk-admin-whatever-123456' },
        'managementKey',
        /can neither mint nor retire keys/,
      ],
      [
        {
          provider: 'openai',
          name: 'x',
          key: openai.generateKey(),
          limit: { value: -5, unit: 'pounds', period: 'daily' },
        },
        'limit.value',
        /greater than 0/,
      ],
      [{ provider: 'openai', name: '', key: openai.generateKey() }, 'name', /required/],
      [{ provider: 'openai', name: 'x', key: openai.generateKey(), colour: 'red' }, 'colour', /should not exist/],
    ];
    for (const [body, field, message] of cases) {
      const res = await request(t.http).post('/api/admin/api-keys').set(auth()).send(body);
      expect({ field, status: res.status }).toEqual({ field, status: 400 });
      expect(res.headers['content-type']).toMatch(/application\/problem\+json/);
      const error = (res.body.errors as { field: string; messages: string[] }[]).find((e) => e.field === field);
      expect({ field, messages: error?.messages.join(' ') }).toEqual({
        field,
        messages: expect.stringMatching(message),
      });
      expect(JSON.stringify(res.body)).not.toContain(String(body.key));
    }
    // A key in the provider's format with the organization it needs is fine.
    await addKey({ provider: 'org-llm', name: 'With org', key: `sk-${'c'.repeat(30)}`, organizationId: 'org-1' });
    expect(t.logs.text).not.toContain(stored);
  });

  it('lists with filters, sorting and pagination as ListAPIKeysResponse', async () => {
    for (let i = 0; i < 5; i++) {
      await addKey({
        provider: 'openai',
        name: `list-${i}`,
        key: openai.generateKey(),
        ...(i < 2 ? { expiresAt: new Date(Date.now() + (i + 1) * 86_400_000).toISOString() } : {}),
      });
    }
    const all = await request(t.http).get('/api/admin/api-keys?q=list-&sort=name&pageSize=2').set(auth()).expect(200);
    expect(all.body).toMatchObject({ total: 5, page: 1, pageSize: 2 });
    expect(all.body.keys.map((k: KeyBody) => k.name)).toEqual(['list-0', 'list-1']);
    const page3 = await request(t.http)
      .get('/api/admin/api-keys?q=list-&sort=-name&pageSize=2&page=3')
      .set(auth())
      .expect(200);
    expect(page3.body.keys.map((k: KeyBody) => k.name)).toEqual(['list-0']);

    const expiring = await request(t.http).get('/api/admin/api-keys?q=list-&expiring=1').set(auth()).expect(200);
    expect(expiring.body.keys.map((k: KeyBody) => [k.name, k.status])).toEqual([['list-0', 'expiring']]);
    const byProvider = await request(t.http).get('/api/admin/api-keys?provider=org-llm').set(auth()).expect(200);
    expect(byProvider.body.total).toBe(1);

    const bad = await request(t.http).get('/api/admin/api-keys?sort=secret&expiring=0&active=maybe').set(auth());
    expect(bad.status).toBe(400);
    expect(bad.body.errors.map((e: { field: string }) => e.field).sort()).toEqual(['active', 'expiring', 'sort']);
  });

  it('edits a key and sets, changes and clears its limit', async () => {
    const key = await addKey({ provider: 'openai', name: 'Editable', key: openai.generateKey() });
    const patched = await request(t.http)
      .patch(`/api/admin/api-keys/${key.id}`)
      .set(auth())
      .send({ name: 'Edited', priority: 5, rotationSchedule: '0 0 1 * *', expiresAt: null })
      .expect(200);
    expect(patched.body).toMatchObject({ name: 'Edited', priority: 5, rotationSchedule: '0 0 1 * *' });
    await request(t.http)
      .patch(`/api/admin/api-keys/${key.id}`)
      .set(auth())
      .send({ rotationSchedule: '99 * * * *' })
      .expect(400);

    const limited = await request(t.http)
      .put(`/api/admin/api-keys/${key.id}/limits`)
      .set(auth())
      .send({ value: 25, unit: 'usd', period: 'daily' })
      .expect(200);
    const tomorrow = new Date();
    tomorrow.setUTCHours(24, 0, 0, 0);
    expect(limited.body.usage).toEqual({
      current: 0,
      limit: 25,
      unit: 'usd',
      period: 'daily',
      resetAt: tomorrow.toISOString(),
    });
    const wrong = await request(t.http)
      .put(`/api/admin/api-keys/${key.id}/limits`)
      .set(auth())
      .send({ value: 10, unit: 'gallons' })
      .expect(400);
    expect(wrong.body.errors.map((e: { field: string }) => e.field).sort()).toEqual(['period', 'unit']);
    const cleared = await request(t.http)
      .put(`/api/admin/api-keys/${key.id}/limits`)
      .set(auth())
      .send({ value: null })
      .expect(200);
    expect(cleared.body.usage).toEqual({ current: 0, limit: null, resetAt: null });
  });

  it('verifies a key with its provider and keeps the answer as ValidationStatus', async () => {
    const secret = openai.generateKey();
    const key = await addKey({ provider: 'openai', name: 'To verify', key: secret });
    const ok = await request(t.http).post(`/api/admin/api-keys/${key.id}/verify`).set(auth()).expect(200);
    expect(ok.body).toMatchObject({ valid: true, details: { organization: expect.any(String) } });
    expect(openai.requests.at(-1)).toMatchObject({ key: secret });

    openai.setKey(secret, { kind: 'revoked' });
    const dead = await request(t.http).post(`/api/admin/api-keys/${key.id}/verify`).set(auth()).expect(200);
    expect(dead.body).toMatchObject({ valid: false, errorType: 'invalid_key', reason: expect.any(String) });
    expect(JSON.stringify(dead.body)).not.toContain(secret);
    const stored = await request(t.http).get(`/api/admin/api-keys/${key.id}`).set(auth()).expect(200);
    expect(stored.body.validation).toMatchObject({
      valid: false,
      errorType: 'invalid_key',
      checkedAt: expect.any(String),
    });
  });

  it('rotates with a new key under the same id, keeps the history and refuses the old secret again', async () => {
    const oldSecret = openai.generateKey();
    const newSecret = openai.generateKey();
    const key = await addKey({ provider: 'openai', name: 'Rotating', key: oldSecret });
    const before = Date.now();
    const res = await request(t.http)
      .put(`/api/admin/api-keys/${key.id}/rotate`)
      .set(auth())
      .send({ key: newSecret, gracePeriodSeconds: 60 })
      .expect(200);
    expect(res.body).toMatchObject({ oldKey: key.key, newKey: `sk-proj-…${newSecret.slice(-4)}` });
    const expiresAt = new Date(res.body.expiresAt).getTime();
    expect(expiresAt).toBeGreaterThanOrEqual(before + 60_000 - 1000);
    expect(expiresAt).toBeLessThanOrEqual(Date.now() + 60_000 + 1000);

    const after = await request(t.http).get(`/api/admin/api-keys/${key.id}`).set(auth()).expect(200);
    expect(after.body).toMatchObject({ id: key.id, key: res.body.newKey, secretVersion: 2 });
    // The vault now hands out the new secret.
    await request(t.http).post(`/api/admin/api-keys/${key.id}/verify`).set(auth()).expect(200);
    expect(openai.requests.at(-1)).toMatchObject({ key: newSecret });

    const history = await request(t.http).get(`/api/admin/api-keys/${key.id}/rotations`).set(auth()).expect(200);
    expect(history.body.rotations).toEqual([
      expect.objectContaining({
        trigger: 'manual',
        source: 'admin',
        status: 'completed',
        fromVersion: 1,
        toVersion: 2,
        oldKey: key.key,
        newKey: res.body.newKey,
      }),
    ]);
    const again = await request(t.http)
      .post('/api/admin/api-keys')
      .set(auth())
      .send({ provider: 'openai', name: 'Old one back', key: oldSecret })
      .expect(400);
    expect(again.body.errors[0].messages[0]).toMatch(/rotated out of "Rotating"/);

    // Without a new key, a provider that cannot mint keys needs one from an admin.
    const needs = await request(t.http).put(`/api/admin/api-keys/${key.id}/rotate`).set(auth()).send({}).expect(422);
    expect(needs.body).toMatchObject({ type: 'urn:keyward:problem:rotation-needs-key', detail: /cannot mint keys/ });
    await request(t.http)
      .put(`/api/admin/api-keys/${key.id}/rotate`)
      .set(auth())
      .send({ key: `gsk_${'x'.repeat(52)}` })
      .expect(400);
  });

  it('mints the new key at OpenRouter and retires the old one there after the grace period', async () => {
    const management = openrouter.generateManagementKey();
    // The first key is minted at the provider too, so Keyward knows its hash for retiring it.
    const minted = await fetch(`${openrouter.baseUrl}/keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${management}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'first' }),
    }).then((r) => r.json() as Promise<{ key: string; data: { hash: string } }>);
    const key = await addKey({
      provider: 'openrouter',
      name: 'Router',
      key: minted.key,
      externalId: minted.data.hash,
      managementKey: management,
    });
    expect(key).toMatchObject({ canProvision: true, managementKey: expect.stringMatching(/…/) });

    const res = await request(t.http)
      .put(`/api/admin/api-keys/${key.id}/rotate`)
      .set(auth())
      .send({ gracePeriodSeconds: 1 })
      .expect(200);
    const newSecret = openrouter.mintedKeys.at(-1)!;
    expect(newSecret).not.toBe(minted.key);
    expect(res.body).toMatchObject({ oldKey: key.key, newKey: `sk-or-v1-…${newSecret.slice(-4)}` });
    expect(res.body.rotation).toMatchObject({ source: 'provisioned', status: 'retiring' });
    expect(openrouter.retiredKeys).toEqual([]);

    await new Promise((resolve) => setTimeout(resolve, 1100));
    await t.app.get(RotationScheduler).runOnce();
    expect(openrouter.retiredKeys).toEqual([minted.key]);
    const history = await request(t.http).get(`/api/admin/api-keys/${key.id}/rotations`).set(auth()).expect(200);
    expect(history.body.rotations[0]).toMatchObject({ status: 'retired', retiredAt: expect.any(String) });
    const verified = await request(t.http).post(`/api/admin/api-keys/${key.id}/verify`).set(auth()).expect(200);
    expect(verified.body.valid).toBe(true);
    expect(openrouter.requests.at(-1)).toMatchObject({ key: newSecret });

    // With grace 0 the old key is retired in the same call.
    const now = await request(t.http).put(`/api/admin/api-keys/${key.id}/rotate`).set(auth()).send({}).expect(200);
    expect(now.body.rotation).toMatchObject({ status: 'retired' });
    expect(openrouter.retiredKeys).toEqual([minted.key, newSecret]);
  });

  it('rotates on schedule where the provider can mint keys, and says an admin is needed where not', async () => {
    const management = openrouter.generateManagementKey();
    const router = await addKey({
      provider: 'openrouter',
      name: 'Scheduled router',
      key: openrouter.generateKey(),
      managementKey: management,
      rotationSchedule: '0 4 * * *',
    });
    const manual = await addKey({
      provider: 'openai',
      name: 'Scheduled openai',
      key: openai.generateKey(),
      rotationSchedule: '0 4 * * *',
    });
    await t.dataSource.query(`UPDATE api_keys SET next_rotation_at = now() - interval '1 minute' WHERE id = ANY($1)`, [
      [router.id, manual.id],
    ]);
    await t.app.get(RotationScheduler).runOnce();

    const routed = await request(t.http).get(`/api/admin/api-keys/${router.id}/rotations`).set(auth()).expect(200);
    expect(routed.body.rotations[0]).toMatchObject({ trigger: 'schedule', source: 'provisioned', toVersion: 2 });
    const routerNow = await request(t.http).get(`/api/admin/api-keys/${router.id}`).set(auth()).expect(200);
    expect(new Date(routerNow.body.nextRotationAt).getTime()).toBeGreaterThan(Date.now());

    const asked = await request(t.http).get(`/api/admin/api-keys/${manual.id}/rotations`).set(auth()).expect(200);
    expect(asked.body.rotations[0]).toMatchObject({ trigger: 'schedule', status: 'needs_admin', error: /cannot mint/ });
  });

  it('revokes at once and for good: no verify, rotate, edit or second revoke; the envelope is destroyed', async () => {
    const secret = openai.generateKey();
    const key = await addKey({ provider: 'openai', name: 'To revoke', key: secret });
    await request(t.http).delete(`/api/admin/api-keys/${key.id}`).set(auth()).expect(409);
    const revoked = await request(t.http).post(`/api/admin/api-keys/${key.id}/revoke`).set(auth()).expect(200);
    expect(revoked.body).toMatchObject({ active: false, status: 'revoked', revokedAt: expect.any(String) });
    const [row] = await t.dataSource.query(`SELECT secret_ciphertext FROM api_keys WHERE id = $1`, [key.id]);
    expect(row.secret_ciphertext).toBeNull();

    const requestsBefore = openai.requests.length;
    for (const [method, url, body] of [
      ['post', `/api/admin/api-keys/${key.id}/verify`, {}],
      ['put', `/api/admin/api-keys/${key.id}/rotate`, { key: openai.generateKey() }],
      ['patch', `/api/admin/api-keys/${key.id}`, { name: 'x' }],
      ['put', `/api/admin/api-keys/${key.id}/limits`, { value: 1, unit: 'requests', period: 'daily' }],
      ['post', `/api/admin/api-keys/${key.id}/revoke`, {}],
    ] as const) {
      const res = await request(t.http)[method](url).set(auth()).send(body);
      expect({ url, status: res.status, type: res.body.type }).toEqual({
        url,
        status: 409,
        type: 'urn:keyward:problem:key-revoked',
      });
      expect(res.body.detail).toMatch(/revoked/);
    }
    expect(openai.requests.length).toBe(requestsBefore);
    const readd = await request(t.http)
      .post('/api/admin/api-keys')
      .set(auth())
      .send({ provider: 'openai', name: 'again', key: secret })
      .expect(400);
    expect(readd.body.errors[0].messages[0]).toMatch(/was revoked/);

    await request(t.http).delete(`/api/admin/api-keys/${key.id}`).set(auth()).expect(204);
    await request(t.http).get(`/api/admin/api-keys/${key.id}`).set(auth()).expect(404);
  });

  it('enforces the permission matrix: one allowed and one denied case per role', async () => {
    const key = await addKey({ provider: 'openai', name: 'Matrix', key: openai.generateKey() });
    const spare = await addKey({ provider: 'openai', name: 'Matrix spare', key: openai.generateKey() });
    // owner: may revoke; nobody signed in: denied.
    await request(t.http).post(`/api/admin/api-keys/${spare.id}/revoke`).set(as('owner')).expect(200);
    await request(t.http).get('/api/admin/api-keys').expect(401);
    // admin: may delete a revoked key; cannot use a malformed id.
    await request(t.http).delete(`/api/admin/api-keys/${spare.id}`).set(as('admin')).expect(204);
    await request(t.http).get('/api/admin/api-keys/not-a-uuid').set(as('admin')).expect(400);
    // operator: adds, verifies, rotates and sets limits; may not revoke or delete.
    const mine = await addKey({ provider: 'openai', name: 'Operator key', key: openai.generateKey() }, 'operator');
    await request(t.http).post(`/api/admin/api-keys/${mine.id}/verify`).set(as('operator')).expect(200);
    await request(t.http)
      .put(`/api/admin/api-keys/${mine.id}/rotate`)
      .set(as('operator'))
      .send({ key: openai.generateKey() })
      .expect(200);
    await request(t.http)
      .put(`/api/admin/api-keys/${mine.id}/limits`)
      .set(as('operator'))
      .send({ value: 100, unit: 'requests', period: 'weekly' })
      .expect(200);
    const denied = await request(t.http).post(`/api/admin/api-keys/${key.id}/revoke`).set(as('operator')).expect(403);
    expect(denied.body.type).toBe('urn:keyward:problem:forbidden');
    await request(t.http).delete(`/api/admin/api-keys/${key.id}`).set(as('operator')).expect(403);
    // auditor: reads keys and history; changes nothing.
    await request(t.http).get(`/api/admin/api-keys/${key.id}`).set(as('auditor')).expect(200);
    await request(t.http).get(`/api/admin/api-keys/${key.id}/rotations`).set(as('auditor')).expect(200);
    await request(t.http).post(`/api/admin/api-keys/${key.id}/verify`).set(as('auditor')).expect(403);
    await request(t.http)
      .post('/api/admin/api-keys')
      .set(as('auditor'))
      .send({ provider: 'openai', name: 'nope', key: openai.generateKey() })
      .expect(403);
    const stillActive = await request(t.http).get(`/api/admin/api-keys/${key.id}`).set(auth()).expect(200);
    expect(stillActive.body.active).toBe(true);
  });

  it('audits every key operation with the key id and masked hint, never the secret', async () => {
    const secret = openai.generateKey();
    const key = await addKey({ provider: 'openai', name: 'Audited', key: secret });
    await request(t.http).post(`/api/admin/api-keys/${key.id}/verify`).set(auth()).expect(200);
    await request(t.http).post(`/api/admin/api-keys/${key.id}/revoke`).set(as('operator')).expect(403);
    await request(t.http).post(`/api/admin/api-keys/${key.id}/revoke`).set(auth()).expect(200);
    const entries = await t.dataSource.query(
      `SELECT action, outcome, target_id, details::text AS details FROM audit_log WHERE target_id = $1 ORDER BY seq`,
      [key.id],
    );
    expect(entries.map((e: { action: string; outcome: string }) => [e.action, e.outcome])).toEqual([
      ['api-key.create', 'success'],
      ['api-key.verify', 'success'],
      ['access.denied', 'denied'],
      ['api-key.revoke', 'success'],
    ]);
    for (const entry of entries.filter((e: { outcome: string }) => e.outcome !== 'denied')) {
      expect(JSON.parse(entry.details).subject).toEqual({ name: 'Audited', provider: 'openai', hint: key.key });
    }
    expect(JSON.stringify(entries)).not.toContain(secret);

    const rotated = await request(t.http)
      .put(
        `/api/admin/api-keys/${(await addKey({ provider: 'openai', name: 'Rotated', key: openai.generateKey() })).id}/rotate`,
      )
      .set(auth())
      .send({ key: openai.generateKey() })
      .expect(200);
    const [entry] = await t.dataSource.query(
      `SELECT details FROM audit_log WHERE action = 'api-key.rotate' AND target_id = $1`,
      [rotated.body.rotation.keyId],
    );
    expect(entry.details).toMatchObject({
      oldHint: rotated.body.oldKey,
      newHint: rotated.body.newKey,
      source: 'admin',
    });
  });
});
