import { JwtService } from '@nestjs/jwt';
import request from 'supertest';
import { apiToken, ConsoleSession, createUser, OWNER, startTestApp, type TestApp } from '../support/test-app';

const JWT_SECRET = 'a-test-jwt-secret-that-is-long-enough-0123456789';

describe('Sessions and tokens: exp, token version, password change and reset, own sessions', () => {
  let t: TestApp;
  let ownerToken: string;
  const jwt = new JwtService();
  const me = (token: string) => request(t.http).get('/api/auth/me').set('Authorization', `Bearer ${token}`);
  const sessionCount = async () =>
    ((await t.dataSource.query(`SELECT count(*)::int AS n FROM sessions`)) as { n: number }[])[0].n;

  beforeAll(async () => {
    t = await startTestApp({ KEYWARD_JWT_SECRET: JWT_SECRET });
    ownerToken = await apiToken(t.http);
  });
  afterAll(async () => {
    await t.close();
  });

  it('refuses a validly signed JWT without exp, or with exp beyond the configured maximum', async () => {
    const owner = (await me(ownerToken).expect(200)).body as { id: string };
    const claims = { sub: owner.id, role: 'owner', tv: 0 };
    const options = { secret: JWT_SECRET, issuer: 'keyward', audience: 'keyward-api', algorithm: 'HS256' as const };

    const forever = jwt.sign(claims, options);
    const noExp = await me(forever).expect(401);
    expect(noExp.body).toMatchObject({ type: 'urn:keyward:problem:unauthenticated' });
    expect((noExp.body as { detail: string }).detail).toContain('no expiry');

    const farAhead = jwt.sign(claims, { ...options, expiresIn: 30 * 86400 });
    expect(((await me(farAhead).expect(401)).body as { detail: string }).detail).toContain('maximum lifetime');

    // The same claims within the maximum (15 minutes by default) are fine.
    await me(jwt.sign(claims, { ...options, expiresIn: 600 })).expect(200);
    const denied = await t.dataSource.query<{ reason: string }[]>(
      `SELECT reason FROM audit_log WHERE action = 'auth.denied' AND reason LIKE '%exp%' ORDER BY seq`,
    );
    expect(denied.length).toBeGreaterThanOrEqual(2);
  });

  it('shows the sign-in page without storing a session row', async () => {
    const before = await sessionCount();
    for (let i = 0; i < 3; i++) await request(t.http).get('/login').expect(200);
    expect(await sessionCount()).toBe(before);
  });

  it('a password change ends the old JWT and the other sessions, and keeps the current one', async () => {
    const user = await createUser(t.http, ownerToken, 'operator');
    const oldToken = await apiToken(t.http, user.email, user.password);
    const here = new ConsoleSession(t.http);
    const elsewhere = new ConsoleSession(t.http);
    await here.signIn(user.email, user.password);
    await elsewhere.signIn(user.email, user.password);
    await me(oldToken).expect(200);

    await here.page('/account');
    const wrong = await here.post('/account/password', {
      currentPassword: 'not-the-password',
      newPassword: 'a-brand-new-password-1',
      confirmPassword: 'a-brand-new-password-1',
    });
    expect(wrong.status).toBe(400);
    expect(wrong.text).toContain('the current password is wrong');

    const changed = await here.post('/account/password', {
      currentPassword: user.password,
      newPassword: 'a-brand-new-password-1',
      confirmPassword: 'a-brand-new-password-1',
    });
    expect(changed.status).toBe(303);

    const refused = await me(oldToken).expect(401);
    expect((refused.body as { detail: string }).detail).toContain('password change');
    const kicked = await elsewhere.agent.get('/admin').redirects(0);
    expect(kicked.status).toBe(303);
    expect(kicked.headers.location).toMatch(/^\/login/);
    const stays = await here.page('/account');
    expect(stays.text).toContain('Password changed');

    await request(t.http).post('/api/auth/token').send({ email: user.email, password: user.password }).expect(401);
    await apiToken(t.http, user.email, 'a-brand-new-password-1');
    const [entry] = await t.dataSource.query<{ outcome: string }[]>(
      `SELECT outcome FROM audit_log WHERE action = 'user.password-change' AND target_id = $1 AND outcome = 'success'`,
      [user.id],
    );
    expect(entry).toBeDefined();
  });

  it('changes the password over the API, answering with a fresh token', async () => {
    const user = await createUser(t.http, ownerToken, 'auditor');
    const oldToken = await apiToken(t.http, user.email, user.password);
    const res = await request(t.http)
      .post('/api/auth/password')
      .set('Authorization', `Bearer ${oldToken}`)
      .send({ currentPassword: user.password, newPassword: 'another-new-password-2' })
      .expect(200);
    await me(oldToken).expect(401);
    await me((res.body as { accessToken: string }).accessToken).expect(200);
  });

  it('a role change and disabling end the user’s JWTs and sessions', async () => {
    const user = await createUser(t.http, ownerToken, 'operator');
    const token = await apiToken(t.http, user.email, user.password);
    const s = new ConsoleSession(t.http);
    await s.signIn(user.email, user.password);
    await request(t.http)
      .patch(`/api/admin/users/${user.id}`)
      .set('Authorization', `Bearer ${ownerToken}`)
      .send({ role: 'auditor' })
      .expect(200);
    await me(token).expect(401);
    expect((await s.agent.get('/admin').redirects(0)).headers.location).toMatch(/^\/login/);

    const fresh = await apiToken(t.http, user.email, user.password);
    await request(t.http)
      .post(`/api/admin/users/${user.id}/disable`)
      .set('Authorization', `Bearer ${ownerToken}`)
      .expect(200);
    await me(fresh).expect(401);
  });

  it('lists one’s own sessions, ends one, and signs out everywhere', async () => {
    const user = await createUser(t.http, ownerToken, 'admin');
    const a = new ConsoleSession(t.http);
    const b = new ConsoleSession(t.http);
    await a.signIn(user.email, user.password);
    await b.agent.get('/login').set('User-Agent', 'Second browser/1.0');
    await b.page('/login');
    await b.agent
      .post('/login')
      .set('User-Agent', 'Second browser/1.0')
      .type('form')
      .send({ _csrf: b.csrf, email: user.email, password: user.password })
      .expect(303);
    const token = await apiToken(t.http, user.email, user.password);

    const page = await a.page('/account');
    expect(page.text).toContain('Your sessions');
    expect(page.text).toContain('Second browser/1.0');
    expect(page.text).toContain('this one');
    // The page names sessions by a hash, never by the session id (the cookie's secret).
    const handle = /action="\/account\/sessions\/([0-9a-f]{32})\/end"/.exec(page.text)?.[1];
    expect(handle).toBeDefined();
    const ended = await a.htmx('post', `/account/sessions/${handle}/end`);
    expect(ended.status).toBe(200);
    expect(ended.text).toContain('Session signed out.');
    expect((await b.agent.get('/admin').redirects(0)).headers.location).toMatch(/^\/login/);
    await me(token).expect(200);

    const out = await a.post('/account/sessions/end-all');
    expect(out.status).toBe(303);
    expect(out.headers.location).toBe('/login');
    await me(token).expect(401);
    const rows = await t.dataSource.query(`SELECT 1 FROM sessions WHERE sess->>'userId' = $1`, [user.id]);
    expect(rows).toHaveLength(0);
  });

  it('an owner reset sets a temporary password the user must change at the next sign-in', async () => {
    const user = await createUser(t.http, ownerToken, 'operator');
    const before = await apiToken(t.http, user.email, user.password);
    await request(t.http)
      .post(`/api/admin/users/${user.id}/password`)
      .set('Authorization', `Bearer ${ownerToken}`)
      .send({ password: 'temporary-password-9' })
      .expect(200);
    await me(before).expect(401);

    const refused = await request(t.http)
      .post('/api/auth/token')
      .send({ email: user.email, password: 'temporary-password-9' })
      .expect(403);
    expect(refused.body).toMatchObject({ type: 'urn:keyward:problem:password-change-required' });

    const s = new ConsoleSession(t.http);
    await s.page('/login');
    const signIn = await s.post('/login', { email: user.email, password: 'temporary-password-9' });
    expect(signIn.headers.location).toBe('/account');
    expect((await s.agent.get('/admin/keys').redirects(0)).headers.location).toBe('/account');
    const account = await s.page('/account');
    expect(account.text).toContain('An owner reset your password');
    const changed = await s.post('/account/password', {
      currentPassword: 'temporary-password-9',
      newPassword: 'my-own-password-10',
      confirmPassword: 'my-own-password-10',
    });
    expect(changed.status).toBe(303);
    await s.page('/admin/keys');
    await apiToken(t.http, user.email, 'my-own-password-10');

    // Resetting one's own password is not a reset; admins cannot reset owners.
    const owner = (await me(ownerToken).expect(200)).body as { id: string };
    await request(t.http)
      .post(`/api/admin/users/${owner.id}/password`)
      .set('Authorization', `Bearer ${ownerToken}`)
      .send({ password: 'temporary-password-9' })
      .expect(409);
    const admin = await createUser(t.http, ownerToken, 'admin');
    const adminToken = await apiToken(t.http, admin.email, admin.password);
    await request(t.http)
      .post(`/api/admin/users/${owner.id}/password`)
      .set('Authorization', `Bearer ${adminToken}`)
      .send({ password: 'temporary-password-9' })
      .expect(403);
    await apiToken(t.http, OWNER.email, OWNER.password);
  });

  it('resets a password from the Users page, with and without htmx', async () => {
    const user = await createUser(t.http, ownerToken, 'auditor');
    const owner = new ConsoleSession(t.http);
    await owner.signIn();
    const page = await owner.page('/admin/users');
    expect(page.text).toContain(`action="/admin/users/${user.id}/password"`);

    const short = await owner.htmx('post', `/admin/users/${user.id}/password`, { password: 'short' });
    expect(short.status).toBe(400);
    const row = await owner.htmx('post', `/admin/users/${user.id}/password`, { password: 'temporary-password-11' });
    expect(row.status).toBe(200);
    expect(row.text).toMatch(new RegExp(`^<tr id="user-${user.id}">`));
    expect(row.text).toContain('they choose a new one at next sign-in');
    expect(row.text).not.toContain('temporary-password-11');
    await request(t.http)
      .post('/api/auth/token')
      .send({ email: user.email, password: 'temporary-password-11' })
      .expect(403);

    const plain = await owner.post(`/admin/users/${user.id}/password`, { password: 'temporary-password-12' });
    expect(plain.status).toBe(303);
    expect((await owner.page('/admin/users')).text).toContain('password reset');
    const audit = await t.dataSource.query<{ outcome: string }[]>(
      `SELECT outcome FROM audit_log WHERE action = 'user.password-reset' AND target_id = $1 ORDER BY seq`,
      [user.id],
    );
    expect(audit.map((a) => a.outcome)).toEqual(['failure', 'success', 'success']);
    expect(JSON.stringify(await t.dataSource.query(`SELECT details FROM audit_log`))).not.toContain(
      'temporary-password-1',
    );
  });
});
