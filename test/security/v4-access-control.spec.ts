import request from 'supertest';
import { startFakeProvider, type OpenRouterFakeProvider } from '../fake-providers';
import { apiToken, ConsoleSession, createUser, OWNER, startTestApp, type TestApp } from '../support/test-app';

/**
 * OWASP ASVS 4.0, V4 Access Control (level 2): IP allowlists for people (4.1.1, 4.3.1), the
 * lockout guard on rule changes, and what operators may not do to keys (4.1.3 least privilege).
 */
jest.setTimeout(60_000);

describe('V4 Access control: IP allowlists for the console and the admin API', () => {
  let t: TestApp;
  let owner: string;
  // The app trusts X-Forwarded-For from loopback only, so the tests can speak from any address.
  const from = (ip: string) => ({ 'X-Forwarded-For': ip });

  beforeAll(async () => {
    t = await startTestApp({ KEYWARD_TRUST_PROXY: 'loopback' });
    owner = await apiToken(t.http);
  });
  afterAll(() => t.close());

  const auditEntries = async (action: string) =>
    (
      await request(t.http)
        .get('/api/admin/audit')
        .query({ action, pageSize: 200 })
        .set('Authorization', `Bearer ${owner}`)
        .expect(200)
    ).body.entries as { ip: string; outcome: string; status: number; actor: { email: string }; reason: string }[];

  it('V4.1.1 refuses an admin outside their role’s allowlist with 403, audited; inside it works', async () => {
    const admin = await createUser(t.http, owner, 'admin');
    const adminToken = await apiToken(t.http, admin.email, admin.password);
    await request(t.http)
      .post('/api/admin/ip-rules')
      .set('Authorization', `Bearer ${owner}`)
      .send({ role: 'admin', cidr: '198.51.100.0/24', note: 'office' })
      .expect(201);

    const outside = await request(t.http)
      .get('/api/admin/users')
      .set('Authorization', `Bearer ${adminToken}`)
      .set(from('203.0.113.9'))
      .expect(403);
    expect(outside.headers['content-type']).toMatch(/application\/problem\+json/);
    expect(outside.body.type).toBe('urn:keyward:problem:ip-not-allowed');

    await request(t.http)
      .get('/api/admin/users')
      .set('Authorization', `Bearer ${adminToken}`)
      .set(from('198.51.100.77'))
      .expect(200);

    const denied = (await auditEntries('access.ip_denied')).filter((e) => e.actor.email === admin.email);
    expect(denied.length).toBeGreaterThanOrEqual(1);
    expect(denied[0]).toMatchObject({ ip: '203.0.113.9', outcome: 'denied', status: 403 });

    // Sign-in from outside is refused too (no token is issued), with an audit entry.
    const signIn = await request(t.http)
      .post('/api/auth/token')
      .set(from('203.0.113.10'))
      .send({ email: admin.email, password: admin.password })
      .expect(403);
    expect(signIn.body.accessToken).toBeUndefined();
  });

  it('V4.1.1 applies per-user rules to the console too, in IPv6', async () => {
    const operator = await createUser(t.http, owner, 'operator');
    await request(t.http)
      .post('/api/admin/ip-rules')
      .set('Authorization', `Bearer ${owner}`)
      .send({ userId: operator.id, cidr: '2001:db8:1::/48' })
      .expect(201);
    const inside = new ConsoleSession(t.http);
    inside.agent.set('X-Forwarded-For', '2001:db8:1::5');
    await inside.signIn(operator.email, operator.password);
    await inside.page('/admin/keys');

    const outside = new ConsoleSession(t.http);
    outside.agent.set('X-Forwarded-For', '2001:db8:2::5');
    await outside.page('/login');
    const res = await outside.post('/login', { email: operator.email, password: operator.password });
    expect(res.status).toBe(403);
    expect(res.text).toContain('may not be used from 2001:db8:2::5');
  });

  it('refuses a rule that would lock out the last owner (here: the caller), with a clear message', async () => {
    const self = await request(t.http)
      .post('/api/admin/ip-rules')
      .set('Authorization', `Bearer ${owner}`)
      .send({ role: 'owner', cidr: '10.0.0.0/8' })
      .expect(409);
    expect(self.body.type).toBe('urn:keyward:problem:ip-rule-locks-out-caller');
    expect(self.body.detail).toMatch(/your own address/);

    // Rules that bind owners are for owners to set: an admin cannot restrict (or lock out) them.
    const admin = await createUser(t.http, owner, 'admin');
    // Admins are held to 198.51.100.0/24 by the first test's rule.
    const adminToken = (
      await request(t.http)
        .post('/api/auth/token')
        .set(from('198.51.100.8'))
        .send({ email: admin.email, password: admin.password })
        .expect(200)
    ).body.accessToken as string;
    const byAdmin = await request(t.http)
      .post('/api/admin/ip-rules')
      .set('Authorization', `Bearer ${adminToken}`)
      .set(from('198.51.100.8'))
      .send({ role: 'owner', cidr: '10.0.0.0/8' })
      .expect(403);
    expect(byAdmin.body.detail).toMatch(/Only an owner/);

    const rules = (await request(t.http).get('/api/admin/ip-rules').set('Authorization', `Bearer ${owner}`).expect(200))
      .body.rules as { role: string | null; cidr: string }[];
    expect(rules.some((r) => r.role === 'owner')).toBe(false);
  });

  it('validates rules: CIDR syntax, one scope, known users', async () => {
    for (const body of [
      { role: 'admin', cidr: '10.0.0.0/33' },
      { role: 'admin', cidr: '127.1' },
      { role: 'admin', userId: '6f1c1f3e-6d3b-4c1e-9f57-2f0a4d5b8c11', cidr: '10.0.0.0/8' },
      { cidr: '10.0.0.0/8' },
      { role: 'wizard', cidr: '10.0.0.0/8' },
      { userId: '6f1c1f3e-6d3b-4c1e-9f57-2f0a4d5b8c11', cidr: '10.0.0.0/8' },
    ]) {
      const res = await request(t.http).post('/api/admin/ip-rules').set('Authorization', `Bearer ${owner}`).send(body);
      expect({ body, status: res.status }).toEqual({ body, status: 400 });
      expect(res.headers['content-type']).toMatch(/problem\+json/);
    }
  });

  it('V4.1.3 operators and auditors cannot manage IP rules', async () => {
    const op = await createUser(t.http, owner, 'operator');
    const opToken = await apiToken(t.http, op.email, op.password);
    await request(t.http)
      .post('/api/admin/ip-rules')
      .set('Authorization', `Bearer ${opToken}`)
      .send({ role: 'operator', cidr: '0.0.0.0/0' })
      .expect(403);
    await request(t.http).get('/api/admin/ip-rules').set('Authorization', `Bearer ${opToken}`).expect(403);
  });

  it('manages rules on the Security page without JavaScript and with htmx', async () => {
    const console = new ConsoleSession(t.http);
    await console.signIn(OWNER.email, OWNER.password);
    const page = await console.page('/admin/security');
    expect(page.text).toContain('Access control');
    expect(page.text).toContain('Rate limits');
    expect(page.text).toContain('Audit log');

    const added = await console.post('/admin/security/ip-rules', {
      scope: 'role',
      role: 'auditor',
      cidr: '192.0.2.0/24',
      note: 'vpn',
    });
    expect(added.status).toBe(303);
    const after = await console.page('/admin/security');
    expect(after.text).toContain('192.0.2.0/24');
    expect(after.text).toContain('Added 192.0.2.0/24 for auditor.');

    const bad = await console.htmx('post', '/admin/security/ip-rules', {
      scope: 'role',
      role: 'auditor',
      cidr: 'not-an-address',
    });
    expect(bad.status).toBe(400);
    expect(bad.text).toContain('cidr must be an IPv4 or IPv6 address');
    expect(bad.text).not.toContain('<html');

    const row = after.text.split('<tr>').find((r) => r.includes('<code>192.0.2.0/24</code>') && r.includes('/delete'))!;
    const id = /ip-rules\/([0-9a-f-]{36})\/delete/.exec(row)![1];
    const removed = await console.post(`/admin/security/ip-rules/${id}/delete`);
    expect(removed.status).toBe(303);
    const last = (await console.page('/admin/security')).text;
    expect(last).toContain('Removed 192.0.2.0/24 for auditor.');
    expect(last).not.toContain('<code>192.0.2.0/24</code>');
  });
});

describe('V4 Access control: what operators may not do to keys', () => {
  let t: TestApp;
  let openrouter: OpenRouterFakeProvider;
  let owner: string;
  let operator: string;
  const auth = (token: string) => ({ Authorization: `Bearer ${token}` });

  beforeAll(async () => {
    openrouter = await startFakeProvider('openrouter');
    process.env.KEYWARD_PROVIDER_OPENROUTER_BASE_URL = openrouter.baseUrl;
    t = await startTestApp();
    owner = await apiToken(t.http);
    const op = await createUser(t.http, owner, 'operator');
    operator = await apiToken(t.http, op.email, op.password);
  });
  afterAll(async () => {
    await t.close();
    await openrouter.close();
    delete process.env.KEYWARD_PROVIDER_OPENROUTER_BASE_URL;
  });

  const create = (token: string, extra: Record<string, unknown>) =>
    request(t.http)
      .post('/api/admin/api-keys')
      .set(auth(token))
      .send({ provider: 'openrouter', name: `k-${Math.random()}`, key: openrouter.generateKey(), ...extra });

  it('V4.1.3 an operator cannot set externalId or the management key (403, clear message); an admin can', async () => {
    const victimHash = 'a'.repeat(64);
    const refused = await create(operator, { externalId: victimHash }).expect(403);
    expect(refused.body.detail).toMatch(/Only owners and admins may set externalId/);
    await create(operator, { managementKey: openrouter.generateKey() }).expect(403);

    const ok = await create(operator, {}).expect(201);
    const patch = await request(t.http)
      .patch(`/api/admin/api-keys/${ok.body.id}`)
      .set(auth(operator))
      .send({ externalId: victimHash })
      .expect(403);
    expect(patch.body.detail).toMatch(/externalId/);
    await request(t.http)
      .put(`/api/admin/api-keys/${ok.body.id}/rotate`)
      .set(auth(operator))
      .send({ key: openrouter.generateKey(), externalId: victimHash })
      .expect(403);
    // The operator may still rename it and rotate it with a new key.
    await request(t.http)
      .patch(`/api/admin/api-keys/${ok.body.id}`)
      .set(auth(operator))
      .send({ name: 'renamed' })
      .expect(200);

    await create(owner, { externalId: victimHash, managementKey: openrouter.generateKey() }).expect(201);
  });

  it('V5.1.3 externalId must have the provider’s format: ".." cannot walk the management API', async () => {
    for (const externalId of ['..', '../keys', '%2e%2e', 'a/b', 'f'.repeat(63)]) {
      const res = await create(owner, { externalId }).expect(400);
      expect(res.body.errors).toEqual([
        { field: 'externalId', messages: [expect.stringMatching(/OpenRouter key hash/)] },
      ]);
    }
    const requests = openrouter.requests.filter((r) => r.path.includes('/keys'));
    expect(requests).toEqual([]);
  });
});
