import { createHmac } from 'node:crypto';
import { JwtService } from '@nestjs/jwt';
import request from 'supertest';
import { jwtSecret } from '../../src/auth/auth.service';
import { KEYWARD_CONFIG } from '../../src/config/config.constants';
import { SecretsService } from '../../src/crypto/secrets.service';
import { apiToken, createUser, OWNER, startTestApp, type TestApp } from '../support/test-app';

type AuditRow = {
  action: string;
  outcome: string;
  reason: string | null;
  actor: { email: string | null };
  status: number | null;
};

describe('JSON API: tokens, roles and problem documents', () => {
  let t: TestApp;
  let ownerToken: string;

  beforeAll(async () => {
    t = await startTestApp();
    ownerToken = await apiToken(t.http);
  });
  afterAll(() => t.close());

  const auditEntries = async (query: Record<string, string>) => {
    const res = await request(t.http)
      .get('/api/admin/audit')
      .query(query)
      .set('Authorization', `Bearer ${ownerToken}`)
      .expect(200);
    return (res.body as { entries: AuditRow[] }).entries;
  };

  it('issues a bearer JWT for the first owner created from the environment', async () => {
    const res = await request(t.http).post('/api/auth/token').send(OWNER).expect(200);
    expect(res.body).toEqual({ accessToken: expect.any(String), tokenType: 'Bearer', expiresIn: 900 });
    const me = await request(t.http)
      .get('/api/auth/me')
      .set('Authorization', `Bearer ${res.body.accessToken}`)
      .expect(200);
    expect(me.body).toMatchObject({ email: OWNER.email, role: 'owner' });
  });

  it('lets an owner list users and refuses an auditor with 403, recorded in the audit log', async () => {
    const list = await request(t.http).get('/api/admin/users').set('Authorization', `Bearer ${ownerToken}`).expect(200);
    expect(list.body.users.map((u: { email: string }) => u.email)).toContain(OWNER.email);
    expect(JSON.stringify(list.body)).not.toMatch(/password|hash/i);

    const auditor = await createUser(t.http, ownerToken, 'auditor');
    const auditorToken = await apiToken(t.http, auditor.email, auditor.password);
    const denied = await request(t.http)
      .get('/api/admin/users')
      .set('Authorization', `Bearer ${auditorToken}`)
      .expect(403);
    expect(denied.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(denied.body).toMatchObject({
      status: 403,
      type: expect.stringMatching(/^urn:keyward:problem:/),
      title: expect.any(String),
    });

    const entries = await auditEntries({ action: 'access.denied', actor: auditor.email });
    expect(entries[0]).toMatchObject({ outcome: 'denied', status: 403, actor: { email: auditor.email } });
    // The auditor may still read the audit log itself.
    await request(t.http).get('/api/admin/audit').set('Authorization', `Bearer ${auditorToken}`).expect(200);
  });

  it('refuses a wrong password with 401 problem+json and records the failed sign-in with its reason', async () => {
    const res = await request(t.http)
      .post('/api/auth/token')
      .send({ email: OWNER.email, password: 'not-the-password' })
      .expect(401);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.body).toMatchObject({ status: 401, title: expect.any(String) });
    expect(JSON.stringify(res.body)).not.toContain('not-the-password');

    const [entry] = await auditEntries({ action: 'auth.signin', outcome: 'failure' });
    expect(entry).toMatchObject({ actor: { email: OWNER.email }, reason: expect.stringMatching(/password/i) });
    expect(JSON.stringify(entry)).not.toContain('not-the-password');
  });

  it('refuses an expired or a forged JWT with 401 and audits both', async () => {
    const [header, payload] = ownerToken.split('.');
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>;
    const forgedPayload = Buffer.from(JSON.stringify({ ...claims, role: 'owner', exp: 4102444800 })).toString(
      'base64url',
    );
    const forged = `${header}.${forgedPayload}.${createHmac('sha256', 'guessed-secret').update(`${header}.${forgedPayload}`).digest('base64url')}`;

    const forgedRes = await request(t.http)
      .get('/api/admin/users')
      .set('Authorization', `Bearer ${forged}`)
      .expect(401);
    expect(forgedRes.body).toMatchObject({ status: 401, detail: expect.stringMatching(/invalid/i) });

    // A token the server itself signed, whose lifetime is over (the shortest configurable
    // lifetime is a minute, too long to wait for in a test).
    const expired = await t.app.get(JwtService).signAsync(
      {
        sub: claims.sub,
        role: claims.role,
        iss: claims.iss,
        aud: claims.aud,
        exp: Math.floor(Date.now() / 1000) - 5,
      },
      { secret: jwtSecret(t.app.get(KEYWARD_CONFIG), t.app.get(SecretsService)), algorithm: 'HS256' },
    );
    const expiredRes = await request(t.http)
      .get('/api/admin/users')
      .set('Authorization', `Bearer ${expired}`)
      .expect(401);
    expect(expiredRes.body.detail).toMatch(/expired/i);

    const denied = await auditEntries({ action: 'auth.denied' });
    expect(denied.some((e) => /invalid/i.test(e.reason ?? ''))).toBe(true);
    expect(denied.some((e) => /expired/i.test(e.reason ?? ''))).toBe(true);
  });

  it('answers a request without credentials with 401 and a WWW-Authenticate challenge', async () => {
    const res = await request(t.http).get('/api/admin/users').expect(401);
    expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
  });

  it('answers a malformed body with 400 and field errors, and an oversized body with 413', async () => {
    const broken = await request(t.http)
      .post('/api/auth/token')
      .set('Content-Type', 'application/json')
      .send('{"email": "a@b.c", "password": ')
      .expect(400);
    expect(broken.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(broken.body).toMatchObject({ status: 400, title: expect.stringMatching(/json/i) });

    const invalid = await request(t.http)
      .post('/api/admin/users')
      .set('Authorization', `Bearer ${ownerToken}`)
      .send({ email: 'not-an-email', password: 'short', role: 'superuser', extra: 1 })
      .expect(400);
    const fields = (invalid.body.errors as { field: string }[]).map((e) => e.field).sort();
    expect(fields).toEqual(['email', 'extra', 'password', 'role']);
    expect(JSON.stringify(invalid.body)).not.toMatch(/stack|at \w+ \(/);

    await request(t.http)
      .post('/api/auth/token')
      .set('Content-Type', 'application/json')
      .send(JSON.stringify({ email: 'a@b.c', password: 'x'.repeat(2 * 1024 * 1024) }))
      .expect(413);
  });

  it('answers an unknown route with a 404 problem document', async () => {
    const res = await request(t.http).get('/api/nothing-here').set('Authorization', `Bearer ${ownerToken}`).expect(404);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.body).toMatchObject({ status: 404, title: expect.any(String), instance: '/api/nothing-here' });
  });

  it('manages users: create with a role, change the role, disable — but never the last owner', async () => {
    const operator = await createUser(t.http, ownerToken, 'operator');
    const auth = { Authorization: `Bearer ${ownerToken}` };
    const changed = await request(t.http)
      .patch(`/api/admin/users/${operator.id}`)
      .set(auth)
      .send({ role: 'admin' })
      .expect(200);
    expect(changed.body.role).toBe('admin');
    await request(t.http).patch(`/api/admin/users/${operator.id}`).set(auth).send({ disabled: true }).expect(200);
    await request(t.http)
      .post('/api/auth/token')
      .send({ email: operator.email, password: operator.password })
      .expect(401);

    const { body } = await request(t.http).get('/api/admin/users').query({ role: 'owner' }).set(auth).expect(200);
    const ownerId = body.users.find((u: { email: string }) => u.email === OWNER.email).id;
    const demote = await request(t.http)
      .patch(`/api/admin/users/${ownerId}`)
      .set(auth)
      .send({ role: 'admin' })
      .expect(409);
    expect(demote.body.detail).toMatch(/last active owner/i);
    await request(t.http)
      .patch(`/api/admin/users/${ownerId}`)
      .set(auth)
      .send({ disabled: true })
      .expect((r) => {
        expect([403, 409]).toContain(r.status);
      });
  });

  it('serves liveness and readiness', async () => {
    await request(t.http).get('/health').expect(200);
    const ready = await request(t.http).get('/health/ready').expect(200);
    expect(ready.body).toMatchObject({ status: 'ready' });
  });

  it('never writes a password or bearer token to the log', async () => {
    expect(t.logs.lines.length).toBeGreaterThan(0);
    // Structured request lines with their real status.
    expect(t.logs.lines.some((l) => /"statusCode":401/.test(l))).toBe(true);
    expect(t.logs.text).not.toContain(OWNER.password);
    expect(t.logs.text).not.toContain('not-the-password');
    expect(t.logs.text).not.toContain(ownerToken);
  });
});
