import request from 'supertest';
import {
  apiToken,
  ConsoleSession,
  cookieNamed,
  createUser,
  csrfFrom,
  OWNER,
  startTestApp,
  type TestApp,
} from '../support/test-app';

const COOKIE = 'keyward.sid';

describe('Console: sign-in, sessions, CSRF and pages', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  const sessionRow = async (cookie: string) => {
    const sid = decodeURIComponent(cookie.split(';')[0].split('=')[1]).replace(/^s:/, '').split('.')[0];
    const rows = await t.dataSource.query<{ sid: string; sess: Record<string, unknown> }[]>(
      'SELECT sid, sess FROM sessions WHERE sid = $1',
      [sid],
    );
    return { sid, row: rows[0] };
  };

  it('sends visitors to the sign-in page, which works as a plain form without JavaScript', async () => {
    const home = await request(t.http).get('/admin').redirects(0);
    expect(home.status).toBe(303);
    expect(home.headers.location).toBe('/login?next=%2Fadmin');

    const page = await request(t.http).get('/login').expect(200);
    expect(page.headers['content-type']).toMatch(/text\/html/);
    expect(page.text).toMatch(/<form method="post" action="\/login"/);
    expect(page.text).toContain('name="_csrf"');
    // Assets come from the app itself, never a CDN, and the CSP allows only self.
    expect(page.text).toContain('/assets/vendor/htmx/htmx.min.js');
    expect(page.text).not.toMatch(/https?:\/\/(?!localhost)[^"']*\.(js|css)/);
    expect(page.headers['content-security-policy']).toMatch(/default-src 'self'/);
    expect(page.headers['x-content-type-options']).toBe('nosniff');
    await request(t.http)
      .get('/assets/vendor/htmx/htmx.min.js')
      .expect(200)
      .expect('content-type', /javascript/);
    await request(t.http).get('/assets/css/app.css').expect(200).expect('content-type', /css/);
  });

  it('stores no session before sign-in, then a server-side session (HttpOnly, SameSite=Lax) destroyed on sign-out', async () => {
    const s = new ConsoleSession(t.http);
    const [{ n: rowsBefore }] = (await t.dataSource.query('SELECT count(*)::int AS n FROM sessions')) as {
      n: number;
    }[];
    const before = await s.page('/login');
    // Showing the sign-in form stores nothing server-side: no session cookie, no session row;
    // its CSRF token rides in a signed HttpOnly cookie instead.
    expect(cookieNamed(before, COOKIE)).toBeUndefined();
    expect(cookieNamed(before, 'keyward.csrf')).toMatch(/HttpOnly/i);
    const [{ n: rowsAfter }] = (await t.dataSource.query('SELECT count(*)::int AS n FROM sessions')) as { n: number }[];
    expect(rowsAfter).toBe(rowsBefore);

    const res = await s.post('/login', { email: OWNER.email, password: OWNER.password });
    expect(res.status).toBe(303);
    expect(res.headers.location).toBe('/admin');
    const cookie = cookieNamed(res, COOKIE)!;
    expect(cookie).toMatch(/HttpOnly/i);
    expect(cookie).toMatch(/SameSite=Lax/i);

    const { sid, row } = await sessionRow(cookie);
    expect(row.sess).toMatchObject({ userId: expect.any(String) });

    const dashboard = await s.page('/admin');
    expect(dashboard.text).toContain('Dashboard');
    expect(dashboard.text).toContain(OWNER.email);

    const out = await s.post('/logout');
    expect(out.status).toBe(303);
    const rows = await t.dataSource.query('SELECT 1 FROM sessions WHERE sid = $1', [sid]);
    expect(rows).toHaveLength(0);
    const after = await s.agent.get('/admin').redirects(0);
    expect(after.status).toBe(303);
  });

  it('shows a wrong password inline and records the attempt', async () => {
    const s = new ConsoleSession(t.http);
    await s.page('/login');
    const res = await s.post('/login', { email: OWNER.email, password: 'wrong-password-1' });
    expect(res.status).toBe(401);
    expect(res.text).toContain('flash-error');
    expect(res.text).toContain(`value="${OWNER.email}"`);
    expect(res.text).not.toContain('wrong-password-1');
    const rows = await t.dataSource.query(
      `SELECT reason FROM audit_log WHERE action = 'auth.signin' AND outcome = 'failure' AND actor_email = $1`,
      [OWNER.email],
    );
    expect(rows.length).toBeGreaterThan(0);
  });

  it('ends a session after the idle timeout and after the absolute lifetime', async () => {
    const idle = new ConsoleSession(t.http);
    const signedIn = await idle.signIn();
    const idleSid = (await sessionRow(cookieNamed(signedIn, COOKIE)!)).sid;
    await t.dataSource.query(`UPDATE sessions SET expire = now() - interval '1 second' WHERE sid = $1`, [idleSid]);
    expect((await idle.agent.get('/admin').redirects(0)).status).toBe(303);

    const old = new ConsoleSession(t.http);
    const res = await old.signIn();
    const { sid } = await sessionRow(cookieNamed(res, COOKIE)!);
    // Signed in 13 hours ago, active all along: the 12-hour absolute lifetime still ends it.
    await t.dataSource.query(
      `UPDATE sessions SET sess = jsonb_set(sess::jsonb, '{createdAt}', to_jsonb($2::bigint))::json WHERE sid = $1`,
      [sid, Date.now() - 13 * 3600_000],
    );
    const denied = await old.agent.get('/admin').redirects(0);
    expect(denied.status).toBe(303);
    expect(denied.headers.location).toMatch(/^\/login/);
  });

  it('refuses a state-changing form or htmx request without the CSRF token, and audits it', async () => {
    const s = new ConsoleSession(t.http);
    await s.signIn();
    const form = await s.agent.post('/admin/users').type('form').send({ email: 'x@example.test', role: 'auditor' });
    expect(form.status).toBe(403);
    expect(form.text).toMatch(/CSRF/i);

    const htmx = await s.agent
      .post('/admin/users')
      .set('HX-Request', 'true')
      .set('x-csrf-token', 'forged')
      .type('form')
      .send({ email: 'x@example.test', role: 'auditor' });
    expect(htmx.status).toBe(403);
    expect(htmx.headers['hx-retarget']).toBe('#flash');

    const rows = await t.dataSource.query<{ reason: string; actor_email: string }[]>(
      `SELECT reason, actor_email FROM audit_log WHERE action = 'csrf.rejected' ORDER BY seq`,
    );
    expect(rows.map((r) => r.reason)).toEqual(expect.arrayContaining(['CSRF token missing', 'CSRF token invalid']));
    expect(rows[0].actor_email).toBe(OWNER.email);
    const users = await t.dataSource.query(`SELECT 1 FROM users WHERE email = 'x@example.test'`);
    expect(users).toHaveLength(0);
  });

  it('renders each page whole, and only its fragment for htmx, with Vary: HX-Request', async () => {
    const s = new ConsoleSession(t.http);
    await s.signIn();
    for (const path of [
      '/admin',
      '/admin/keys',
      '/admin/usage',
      '/admin/alerts',
      '/admin/security',
      '/admin/users',
      '/admin/audit',
    ]) {
      const page = await s.page(path);
      expect(page.text).toMatch(/^<!doctype html>/i);
      expect(page.text).toContain('<nav aria-label="Main">');
      for (const section of ['Keys', 'Usage', 'Alerts', 'Security']) expect(page.text).toContain(`>${section}</a>`);
    }
    const table = await s.htmx('get', '/admin/users');
    expect(table.status).toBe(200);
    expect(table.headers.vary).toMatch(/HX-Request/);
    expect(table.text).not.toMatch(/<html|aria-label="Main"/i);
    expect(table.text).toContain('<table>');

    const audit = await s.htmx('get', '/admin/audit?action=auth.signin&outcome=success');
    expect(audit.text).not.toMatch(/<html/i);
    expect(audit.text).toContain('auth.signin');
    expect(audit.text).not.toContain('auth.signout');
  });

  it('adds a user through the form: inline field errors, then the new row, with and without htmx', async () => {
    const s = new ConsoleSession(t.http);
    await s.signIn();
    const bad = await s.htmx('post', '/admin/users', { email: 'not-an-email', password: 'short', role: 'auditor' });
    expect(bad.status).toBe(400);
    expect(bad.text).toContain('field-error');
    expect(bad.text).not.toMatch(/<html/i);
    expect(bad.text).toContain('value="not-an-email"');
    expect(bad.text).not.toContain('value="short"');

    const good = await s.htmx('post', '/admin/users', {
      email: 'new-op@example.test',
      password: 'operator-pass-1',
      role: 'operator',
    });
    expect(good.status).toBe(201);
    expect(good.headers['hx-trigger']).toBe('users-changed');

    const plain = await s.post('/admin/users', {
      email: 'plain@example.test',
      password: 'auditor-pass-12',
      role: 'auditor',
    });
    expect(plain.status).toBe(303);
    const page = await s.page('/admin/users');
    expect(page.text).toContain('Created plain@example.test (auditor).');
    expect(page.text).toContain('new-op@example.test');

    const plainRow = page.text
      .split('<tr id="user-')
      .slice(1)
      .find((row) => row.includes('plain@example.test'));
    const id = plainRow?.slice(0, 36);
    expect(id).toBeDefined();
    const row = await s.htmx('post', `/admin/users/${id}/role`, { role: 'admin' });
    expect(row.status).toBe(200);
    expect(row.text).toMatch(/^<tr id="user-/);
    expect(row.text).toContain('<option value="admin" selected>');
  });

  it('keeps the console closed to roles that may not see a page, and audits the refusal', async () => {
    const token = await apiToken(t.http);
    const auditor = await createUser(t.http, token, 'auditor');
    const s = new ConsoleSession(t.http);
    await s.signIn(auditor.email, auditor.password);
    const users = await s.agent.get('/admin/users').redirects(0);
    expect(users.status).toBe(403);
    expect(users.text).toMatch(/<!doctype html>/i);
    const audit = await s.page('/admin/audit');
    expect(audit.text).toContain('Audit log');
    expect(audit.text).not.toContain('action="/admin/users"');
    const rows = await t.dataSource.query(
      `SELECT 1 FROM audit_log WHERE action = 'access.denied' AND actor_email = $1`,
      [auditor.email],
    );
    expect(rows.length).toBeGreaterThan(0);
  });

  it('answers an unknown console page with an HTML 404 page', async () => {
    const s = new ConsoleSession(t.http);
    await s.signIn();
    const res = await s.agent.get('/admin/nothing').redirects(0);
    expect(res.status).toBe(404);
    expect(res.text).toMatch(/<!doctype html>/i);
    expect(csrfFrom(res.text)).toBeDefined();
  });
});
