import { Client } from 'pg';
import request from 'supertest';
import { AccessTokensService } from '../../src/access-tokens/access-tokens.service';
import { apiToken, ConsoleSession, createUser, startTestApp, type TestApp } from '../support/test-app';

const TOKEN_FORMAT = /^kw_[A-Za-z0-9_-]{43}$/;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface TokenBody {
  id: string;
  name: string;
  hint: string;
  token?: string;
  [field: string]: unknown;
}

describe('Access tokens: API, console, gateway lookups', () => {
  let t: TestApp;
  let service: AccessTokensService;
  const bearer: Record<string, string> = {};
  const as = (role: string) => ({ Authorization: `Bearer ${bearer[role]}` });
  /** Every raw token this file has seen; none may reach the audit log or the logs. */
  const issued: string[] = [];

  async function create(body: Record<string, unknown>, role = 'owner'): Promise<TokenBody & { token: string }> {
    const res = await request(t.http).post('/api/admin/access-tokens').set(as(role)).send(body);
    if (res.status !== 201) throw new Error(`create answered ${res.status}: ${JSON.stringify(res.body)}`);
    const created = res.body as TokenBody & { token: string };
    issued.push(created.token);
    return created;
  }

  beforeAll(async () => {
    t = await startTestApp();
    service = t.app.get(AccessTokensService);
    bearer.owner = await apiToken(t.http);
    for (const role of ['admin', 'operator', 'auditor']) {
      const user = await createUser(t.http, bearer.owner, role);
      bearer[role] = await apiToken(t.http, user.email, user.password);
    }
  });
  afterAll(async () => {
    await t.close();
  });

  it('creates a token and shows it once: 201 with the token, never again', async () => {
    const expiresAt = new Date(Date.now() + 30 * 86_400_000).toISOString();
    const created = await create({
      name: 'Billing service',
      providers: ['openai', 'anthropic'],
      models: ['gpt-4o-mini'],
      expiresAt,
      rateLimitPerMinute: 120,
      allowedIps: ['10.1.2.3/8', '2001:db8::/32', '192.168.1.7'],
    });
    expect(created.token).toMatch(TOKEN_FORMAT);
    expect(created).toMatchObject({
      id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      name: 'Billing service',
      hint: `kw_…${created.token.slice(-4)}`,
      status: 'active',
      active: true,
      providers: ['openai', 'anthropic'],
      models: ['gpt-4o-mini'],
      rateLimitPerMinute: 120,
      // Ranges are stored by their network address.
      allowedIps: ['10.0.0.0/8', '2001:db8::/32', '192.168.1.7'],
      expiresAt,
      lastUsedAt: null,
      revokedAt: null,
      createdBy: 'owner@example.test',
    });

    const one = await request(t.http).get(`/api/admin/access-tokens/${created.id}`).set(as('owner')).expect(200);
    expect(one.body).not.toHaveProperty('token');
    expect(one.body).toMatchObject({ id: created.id, hint: created.hint });
    const list = await request(t.http).get('/api/admin/access-tokens').set(as('owner')).expect(200);
    expect(JSON.stringify(list.body)).not.toContain(created.token);
    const stored = await t.dataSource.query<{ token_hash: string }[]>(
      `SELECT token_hash FROM access_tokens WHERE id = $1`,
      [created.id],
    );
    expect(stored[0].token_hash).toMatch(/^[0-9a-f]{64}$/);

    const minimal = await create({ name: 'Anything goes' });
    expect(minimal).toMatchObject({
      providers: null,
      models: null,
      rateLimitPerMinute: null,
      allowedIps: null,
      expiresAt: null,
    });
    expect(minimal.token).not.toBe(created.token);
  });

  it('refuses invalid input with field errors, naming what is allowed', async () => {
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ name: 'x', providers: ['nope'] }, 'providers', /unknown provider nope; known providers: .*openai/],
      [{ name: 'x', allowedIps: ['10.0.0.0/33'] }, 'allowedIps', /IPv4 or IPv6 address or a CIDR range/],
      [{ name: 'x', allowedIps: ['localhost'] }, 'allowedIps', /CIDR/],
      [{ name: 'x', expiresAt: '2020-01-01T00:00:00Z' }, 'expiresAt', /in the future/],
      [{ name: 'x', expiresAt: 'tomorrow' }, 'expiresAt', /ISO 8601/],
      [{ name: 'x', rateLimitPerMinute: 0 }, 'rateLimitPerMinute', /whole number from 1 to 1000000/],
      [{ name: 'x', rateLimitPerMinute: 1_000_001 }, 'rateLimitPerMinute', /1 to 1000000/],
      [{ name: 'x', rateLimitPerMinute: 1.5 }, 'rateLimitPerMinute', /whole number/],
      [{ name: '' }, 'name', /required/],
      [{ name: 'y'.repeat(121) }, 'name', /at most 120/],
      [{ name: 'x', providers: [] }, 'providers', /at least one provider/],
      [{ name: 'x', models: [42] }, 'models', /model ids/],
      [{ name: 'x', token: 'kw_chosen' }, 'token', /should not exist/],
    ];
    for (const [body, field, message] of cases) {
      const res = await request(t.http).post('/api/admin/access-tokens').set(as('owner')).send(body);
      expect({ body, status: res.status }).toEqual({ body, status: 400 });
      expect(res.headers['content-type']).toMatch(/application\/problem\+json/);
      const error = (res.body as { errors: { field: string; messages: string[] }[] }).errors.find(
        (e) => e.field === field,
      );
      expect({ body, messages: error?.messages.join(' ') }).toEqual({ body, messages: expect.stringMatching(message) });
      expect(res.text).not.toContain('kw_chosen');
    }
    const [{ count }] = await t.dataSource.query<{ count: string }[]>(
      `SELECT count(*) FROM access_tokens WHERE name = 'x'`,
    );
    expect(count).toBe('0');

    await request(t.http).get('/api/admin/access-tokens/not-a-uuid').set(as('owner')).expect(400);
    await request(t.http)
      .get('/api/admin/access-tokens/7d4b0a6e-95c4-4d9e-8d3e-0d7c1f6f2a11')
      .set(as('owner'))
      .expect(404);
    await request(t.http).get('/api/admin/access-tokens?active=maybe').set(as('owner')).expect(400);
  });

  it('lists with filters and pages', async () => {
    const live = await create({ name: 'Filter me live' });
    const dead = await create({ name: 'Filter me revoked' });
    await request(t.http).post(`/api/admin/access-tokens/${dead.id}/revoke`).set(as('owner')).expect(200);

    const byName = await request(t.http).get('/api/admin/access-tokens?q=filter%20me').set(as('owner')).expect(200);
    expect(byName.body).toMatchObject({ total: 2, page: 1, pageSize: 50 });
    const names = (byName.body as { tokens: TokenBody[] }).tokens.map((x) => x.name).sort();
    expect(names).toEqual(['Filter me live', 'Filter me revoked']);

    const active = await request(t.http).get('/api/admin/access-tokens?q=filter&active=true').set(as('owner'));
    expect((active.body as { tokens: TokenBody[] }).tokens.map((x) => x.id)).toEqual([live.id]);
    const inactive = await request(t.http).get('/api/admin/access-tokens?q=filter&active=false').set(as('owner'));
    expect((inactive.body as { tokens: TokenBody[] }).tokens.map((x) => x.id)).toEqual([dead.id]);
    expect((inactive.body as { tokens: TokenBody[] }).tokens[0]).toMatchObject({
      status: 'revoked',
      active: false,
      revokedBy: 'owner@example.test',
    });

    const paged = await request(t.http).get('/api/admin/access-tokens?q=filter&pageSize=1&page=2').set(as('owner'));
    expect(paged.body).toMatchObject({ total: 2, page: 2, pageSize: 1 });
    expect((paged.body as { tokens: TokenBody[] }).tokens).toHaveLength(1);
  });

  it('resolves a valid token to its principal, and unknown, malformed, expired tokens to null', async () => {
    const created = await create({
      name: 'Resolver',
      providers: ['openai'],
      models: ['gpt-4o-mini'],
      rateLimitPerMinute: 30,
      allowedIps: ['10.0.0.0/8'],
    });
    const principal = await service.resolve(created.token);
    expect(principal).toEqual({
      id: created.id,
      name: 'Resolver',
      providers: ['openai'],
      models: ['gpt-4o-mini'],
      rateLimitPerMinute: 30,
      allowedIps: ['10.0.0.0/8'],
      expiresAt: null,
      scopes: new Set(),
    });
    // Answered from memory the second time: the same object.
    expect(await service.resolve(created.token)).toBe(principal);

    expect(await service.resolve(`kw_${'A'.repeat(43)}`)).toBeNull();
    expect(await service.resolve('kw_short')).toBeNull();
    expect(await service.resolve(created.token.replace(/^kw_/, 'sk_'))).toBeNull();

    // Expired in the database before it was ever looked up.
    const old = await create({ name: 'Expired', expiresAt: new Date(Date.now() + 60_000).toISOString() });
    await t.dataSource.query(`UPDATE access_tokens SET expires_at = now() - interval '1 minute' WHERE id = $1`, [
      old.id,
    ]);
    expect(await service.resolve(old.token)).toBeNull();
    const view = await request(t.http).get(`/api/admin/access-tokens/${old.id}`).set(as('owner')).expect(200);
    expect(view.body).toMatchObject({ status: 'expired', active: false });

    // Expiring while cached: the cache never outlives the token.
    const soon = await create({ name: 'Expires soon', expiresAt: new Date(Date.now() + 1200).toISOString() });
    expect(await service.resolve(soon.token)).not.toBeNull();
    await sleep(1300);
    expect(await service.resolve(soon.token)).toBeNull();
  });

  it('checks addresses (CIDR, IPv6, IPv4-mapped IPv6) and provider/model scope', async () => {
    const scoped = await create({
      name: 'Scoped',
      providers: ['openai'],
      models: ['gpt-4o-mini', 'gpt-4o'],
      allowedIps: ['10.0.0.0/8', '2001:db8::/32', '192.168.1.7'],
    });
    const p = (await service.resolve(scoped.token))!;
    expect(service.ipAllowed(p, '10.20.30.40')).toBe(true);
    expect(service.ipAllowed(p, '::ffff:10.20.30.40')).toBe(true);
    expect(service.ipAllowed(p, '11.0.0.1')).toBe(false);
    expect(service.ipAllowed(p, '::ffff:11.0.0.1')).toBe(false);
    expect(service.ipAllowed(p, '192.168.1.7')).toBe(true);
    expect(service.ipAllowed(p, '192.168.1.8')).toBe(false);
    expect(service.ipAllowed(p, '2001:db8:ffff::1')).toBe(true);
    expect(service.ipAllowed(p, '2001:db9::1')).toBe(false);
    expect(service.ipAllowed(p, '')).toBe(false);

    expect(service.allows(p, 'openai', 'gpt-4o')).toBe(true);
    expect(service.allows(p, 'openai', 'gpt-4.1')).toBe(false);
    expect(service.allows(p, 'openai')).toBe(true);
    expect(service.allows(p, 'anthropic')).toBe(false);
    expect(service.allows(p, 'anthropic', 'gpt-4o')).toBe(false);

    const open = (await service.resolve((await create({ name: 'Open' })).token))!;
    expect(service.ipAllowed(open, '203.0.113.9')).toBe(true);
    expect(service.ipAllowed(open, '::1')).toBe(true);
    expect(service.allows(open, 'groq', 'llama-3.1-8b-instant')).toBe(true);
  });

  it('records last use in a batch, not on the hot path', async () => {
    const created = await create({ name: 'Used' });
    const principal = (await service.resolve(created.token))!;
    for (let i = 0; i < 50; i++) service.touch(principal.id);
    const before = await request(t.http).get(`/api/admin/access-tokens/${created.id}`).set(as('owner'));
    expect(before.body).toMatchObject({ lastUsedAt: null });
    await service.flushUsage();
    const after = await request(t.http).get(`/api/admin/access-tokens/${created.id}`).set(as('owner'));
    expect(Date.parse((after.body as { lastUsedAt: string }).lastUsedAt)).toBeGreaterThan(Date.now() - 10_000);
  });

  it('revokes at once and for good: resolve() answers null right after, a second revoke is a 409', async () => {
    const created = await create({ name: 'To revoke' });
    expect(await service.resolve(created.token)).not.toBeNull(); // cached now
    const res = await request(t.http)
      .post(`/api/admin/access-tokens/${created.id}/revoke`)
      .set(as('owner'))
      .expect(200);
    expect(res.body).toMatchObject({ id: created.id, status: 'revoked', revokedBy: 'owner@example.test' });
    expect(res.body).not.toHaveProperty('token');
    expect(await service.resolve(created.token)).toBeNull();

    const again = await request(t.http)
      .post(`/api/admin/access-tokens/${created.id}/revoke`)
      .set(as('owner'))
      .expect(409);
    expect(again.body).toMatchObject({ type: 'urn:keyward:problem:access-token-revoked' });
  });

  it('hears a revoke committed by another instance through LISTEN/NOTIFY within a second', async () => {
    const created = await create({ name: 'Revoked elsewhere' });
    expect(await service.resolve(created.token)).not.toBeNull(); // cached for 30 s
    // Another instance's revoke: same SQL, its own connection.
    const other = new Client({ connectionString: t.databaseUrl });
    await other.connect();
    try {
      await other.query('BEGIN');
      await other.query(`UPDATE access_tokens SET revoked_at = now(), revoked_by = 'other' WHERE id = $1`, [
        created.id,
      ]);
      await other.query(`SELECT pg_notify('keyward_tokens', $1)`, [created.id]);
      await other.query('COMMIT');
    } finally {
      await other.end();
    }
    const deadline = Date.now() + 1000;
    let principal = await service.resolve(created.token);
    while (principal && Date.now() < deadline) {
      await sleep(25);
      principal = await service.resolve(created.token);
    }
    expect(principal).toBeNull();
  });

  it('enforces the permission matrix: operators create but cannot revoke, auditors only read', async () => {
    const mine = await create({ name: 'Operator made' }, 'operator');
    expect(mine.createdBy).toMatch(/^operator-/);
    await request(t.http).get('/api/admin/access-tokens').set(as('operator')).expect(200);
    await request(t.http).post(`/api/admin/access-tokens/${mine.id}/revoke`).set(as('operator')).expect(403);

    await request(t.http).get('/api/admin/access-tokens').set(as('auditor')).expect(200);
    await request(t.http).get(`/api/admin/access-tokens/${mine.id}`).set(as('auditor')).expect(200);
    await request(t.http).post('/api/admin/access-tokens').set(as('auditor')).send({ name: 'nope' }).expect(403);
    await request(t.http).post(`/api/admin/access-tokens/${mine.id}/revoke`).set(as('auditor')).expect(403);

    const byAdmin = await create({ name: 'Admin made' }, 'admin');
    await request(t.http).post(`/api/admin/access-tokens/${byAdmin.id}/revoke`).set(as('admin')).expect(200);
    await request(t.http).get('/api/admin/access-tokens').expect(401);

    const denied = await t.dataSource.query<{ target_id: string }[]>(
      `SELECT target_id FROM audit_log WHERE action = 'access.denied' AND details->>'attempted' = 'access-token.revoke'`,
    );
    expect(denied.map((d) => d.target_id)).toContain(mine.id);
  });

  it('serves the console page whole and its table alone for htmx; creates with and without htmx', async () => {
    const s = new ConsoleSession(t.http);
    await s.signIn();
    const page = await s.page('/admin/access-tokens');
    expect(page.text).toMatch(/^<!doctype html>/i);
    expect(page.text).toContain('<a href="/admin/access-tokens" aria-current="page">Access tokens</a>');
    expect(page.text).toContain('Billing service');
    expect(page.text).toContain('<code>10.0.0.0/8</code>');
    expect(page.text).toContain('120/min');
    expect(page.text).toMatch(/name="_csrf" value="[^"]+"/);
    expect(page.headers.vary).toMatch(/HX-Request/);

    const table = await s.htmx('get', '/admin/access-tokens?q=billing');
    expect(table.status).toBe(200);
    expect(table.headers.vary).toMatch(/HX-Request/);
    expect(table.text).not.toMatch(/<html|aria-label="Main"/i);
    expect(table.text).toContain('Billing service');
    expect(table.text).not.toContain('Filter me live');

    const bad = await s.htmx('post', '/admin/access-tokens', { name: 'Console bad', allowedIps: '10.0.0.0/99' });
    expect(bad.status).toBe(400);
    expect(bad.text).not.toMatch(/<html/i);
    expect(bad.text).toContain('id="token-ips-error"');
    expect(bad.text).toContain('value="Console bad"');

    const viaHtmx = await s.htmx('post', '/admin/access-tokens', {
      name: 'Console htmx',
      providers: 'openai',
      models: 'gpt-4o-mini, gpt-4o',
      rateLimitPerMinute: '60',
      allowedIps: '10.0.0.0/8 ::1',
      expiresAt: '2099-01-31T12:00',
    });
    expect(viaHtmx.status).toBe(201);
    expect(viaHtmx.headers['hx-trigger']).toBe('tokens-changed');
    expect(viaHtmx.headers['cache-control']).toBe('no-store');
    expect(viaHtmx.text).not.toMatch(/<html/i);
    expect(viaHtmx.text).toContain('it will not be shown again');
    const htmxToken = /<code class="details" id="new-token">([^<]+)<\/code>/.exec(viaHtmx.text)?.[1];
    expect(htmxToken).toMatch(TOKEN_FORMAT);
    issued.push(htmxToken!);
    expect(await service.resolve(htmxToken!)).toMatchObject({
      name: 'Console htmx',
      providers: ['openai'],
      models: ['gpt-4o-mini', 'gpt-4o'],
      rateLimitPerMinute: 60,
      allowedIps: ['10.0.0.0/8', '::1'],
      expiresAt: new Date('2099-01-31T12:00:00Z'),
    });

    const plain = await s.post('/admin/access-tokens', { name: 'Console plain' });
    expect(plain.status).toBe(201);
    expect(plain.text).toMatch(/^<!doctype html>/i);
    const plainToken = /<code class="details" id="new-token">([^<]+)<\/code>/.exec(plain.text)?.[1];
    expect(plainToken).toMatch(TOKEN_FORMAT);
    issued.push(plainToken!);
    expect(plain.text).toContain('it will not be shown again');

    const later = await s.page('/admin/access-tokens');
    expect(later.text).toContain('Console plain');
    expect(later.text).not.toContain(plainToken);
    expect(later.text).not.toContain(htmxToken);
  });

  it('revokes from the console with a confirmation, swapping the row (htmx) or reloading the page', async () => {
    const s = new ConsoleSession(t.http);
    await s.signIn();
    const one = await create({ name: 'Console revoke htmx' });
    const two = await create({ name: 'Console revoke plain' });
    const page = await s.page('/admin/access-tokens');
    expect(page.text).toContain(
      `hx-post="/admin/access-tokens/${one.id}/revoke" hx-target="closest tr" hx-swap="outerHTML" hx-confirm="Revoke Console revoke htmx?`,
    );

    const row = await s.htmx('post', `/admin/access-tokens/${one.id}/revoke`);
    expect(row.status).toBe(200);
    expect(row.text).toMatch(/^<tr id="token-/);
    expect(row.text).toContain('revoked');
    expect(row.text).not.toContain('/revoke"');
    expect(await service.resolve(one.token)).toBeNull();

    const plain = await s.post(`/admin/access-tokens/${two.id}/revoke`);
    expect(plain.status).toBe(303);
    expect(plain.headers.location).toBe('/admin/access-tokens');
    const after = await s.page('/admin/access-tokens');
    expect(after.text).toContain('Console revoke plain (kw_…');
    const again = await s.post(`/admin/access-tokens/${two.id}/revoke`);
    expect(again.status).toBe(303);
    expect((await s.page('/admin/access-tokens')).text).toContain('a revoked token stays revoked');

    const noCsrf = await s.agent.post(`/admin/access-tokens/${one.id}/revoke`).type('form').send({}).redirects(0);
    expect(noCsrf.status).toBe(403);
  });

  it('shows operators the form but no revoke button, and keeps auditors to reading', async () => {
    const operator = await createUser(t.http, bearer.owner, 'operator');
    const s = new ConsoleSession(t.http);
    await s.signIn(operator.email, operator.password);
    const page = await s.page('/admin/access-tokens');
    expect(page.text).toContain('id="token-form"');
    expect(page.text).not.toContain('/revoke"');

    const auditor = await createUser(t.http, bearer.owner, 'auditor');
    const a = new ConsoleSession(t.http);
    await a.signIn(auditor.email, auditor.password);
    const readOnly = await a.page('/admin/access-tokens');
    expect(readOnly.text).not.toContain('id="token-form"');
    const refused = await a.post('/admin/access-tokens', { name: 'Auditor made' });
    expect(refused.status).toBe(403);
  });

  it('writes audit entries that name the token by hint and never hold a raw token; logs neither', async () => {
    const entries = await t.dataSource.query<{ action: string; outcome: string; details: string }[]>(
      `SELECT action, outcome, details::text AS details FROM audit_log WHERE action LIKE 'access-token.%' ORDER BY seq`,
    );
    expect(entries.filter((e) => e.action === 'access-token.create' && e.outcome === 'success').length).toBeGreaterThan(
      10,
    );
    expect(entries.some((e) => e.action === 'access-token.revoke' && e.outcome === 'success')).toBe(true);
    const create = entries.find((e) => e.details.includes('Billing service'))!;
    expect(JSON.parse(create.details)).toMatchObject({ name: 'Billing service', subject: { name: 'Billing service' } });

    expect(issued.length).toBeGreaterThan(10);
    const rows = await t.dataSource.query<{ row: string }[]>(`SELECT row_to_json(a)::text AS row FROM audit_log a`);
    const everything = rows.map((r) => r.row).join('\n');
    for (const token of issued) {
      expect(everything).not.toContain(token);
      expect(everything).not.toContain(token.slice(3));
      expect(t.logs.text).not.toContain(token.slice(3));
    }
  });
});
