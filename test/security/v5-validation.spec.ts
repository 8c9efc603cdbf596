import request from 'supertest';
import { apiToken, ConsoleSession, createUser, OWNER, startTestApp, type TestApp } from '../support/test-app';

jest.setTimeout(60_000);

/**
 * OWASP ASVS 4.0, V5 Validation (level 2) and V13 API: hostile input is a 400 problem, never a
 * 500 (5.1.3, 13.2.5); numbers and dates are parsed strictly (5.1.4); look-alike accounts are
 * refused (5.1.3); API routes are case-sensitive, so a console cookie never reaches them (13.1.x).
 */
describe('V5 Validation and V13 API: hostile input', () => {
  let t: TestApp;
  let owner: string;
  const auth = () => ({ Authorization: `Bearer ${owner}` });

  beforeAll(async () => {
    t = await startTestApp();
    owner = await apiToken(t.http);
  });
  afterAll(() => t.close());

  const json = (path: string, body: string, withAuth = true) => {
    const req = request(t.http).post(path).set('Content-Type', 'application/json');
    return (withAuth ? req.set(auth()) : req).send(body);
  };
  const expectProblem = (res: request.Response, status = 400) => {
    expect({ status: res.status, type: res.headers['content-type'] }).toEqual({
      status,
      type: expect.stringMatching(/application\/problem\+json/),
    });
  };

  it('V5.1.3 NUL in the unauthenticated sign-in email: 400, not 500 (API and console)', async () => {
    expectProblem(await json('/api/auth/token', '{"email":"owner@example.test\\u0000","password":"x"}', false));
    const console = new ConsoleSession(t.http);
    await console.page('/login');
    const res = await console.post('/login', { email: 'owner\u0000@example.test', password: 'x' });
    expect(res.status).toBe(400);
    expect(res.text).toContain('must not contain NUL');
  });

  it('V5.1.3 lone surrogates, NUL in keys and queries: 400', async () => {
    expectProblem(
      await json('/api/admin/users', '{"email":"a\\udc00@example.test","password":"long-password-1","role":"auditor"}'),
    );
    expectProblem(await json('/api/admin/users', '{"em\\u0000ail":"a@example.test"}'));
    expectProblem(await request(t.http).get('/api/admin/users').query({ q: 'a\u0000' }).set(auth()));
  });

  it('V13.2.5 20,000-deep JSON: 400, and the server still answers', async () => {
    const deep = `${'{"a":'.repeat(20_000)}1${'}'.repeat(20_000)}`;
    const res = await json('/api/admin/users', deep);
    expectProblem(res);
    expect(res.body.detail).toMatch(/nesting/);
    const arrays = await json('/api/admin/ip-rules', `{"cidr":${'['.repeat(20_000)}${']'.repeat(20_000)}}`);
    expectProblem(arrays);
    await request(t.http).get('/health').expect(200);
  });

  it('V5.1.4 numbers are parsed strictly: 1e20, true, 0x10, "" and fractions are refused', async () => {
    for (const page of ['1e20', '99999999999999999999', 'true', '0x10', '1.5', '-1', ' 2']) {
      expectProblem(await request(t.http).get('/api/admin/users').query({ page }).set(auth()));
    }
    await request(t.http).get('/api/admin/users').query({ page: '2', pageSize: '10' }).set(auth()).expect(200);
    // In JSON bodies too: a boolean or a hex string is not a priority.
    for (const priority of ['true', '"0x10"', '"12abc"', '1.5', '[1]']) {
      const res = await json(
        '/api/admin/api-keys',
        `{"provider":"openai","name":"n","key":"sk-x","priority":${priority}}`,
      );
      expectProblem(res);
      expect(res.body.errors.map((e: { field: string }) => e.field)).toContain('priority');
    }
  });

  it('V5.1.4 dates must exist on the calendar', async () => {
    for (const from of ['2026-02-30', '2026-02-29T00:00:00Z', '2026-04-31T10:00', '2026-01-01T24:00', 'yesterday']) {
      expectProblem(await request(t.http).get('/api/admin/audit').query({ from }).set(auth()));
    }
    await request(t.http).get('/api/admin/audit').query({ from: '2028-02-29T23:59:59+02:00' }).set(auth()).expect(200);
  });

  it('V5.1.3 emails are normalised (NFKC, lower case) and look-alikes of an existing account refused', async () => {
    await createUser(t.http, owner, 'auditor', 'alice@example.test');
    for (const email of [
      'ALICE@example.test', // case
      'ａｌｉｃｅ@example.test', // fullwidth
      'аlice@example.test', // Cyrillic а
      'alicе@example.test', // Cyrillic е
    ]) {
      const res = await request(t.http)
        .post('/api/admin/users')
        .set(auth())
        .send({ email, password: 'long-password-123', role: 'admin' });
      expect({ email, status: res.status }).toEqual({ email, status: 400 });
      expect(res.body.errors[0].messages[0]).toMatch(/already exists|looks like an existing account/);
    }
    // The fullwidth spelling signs in to the same account.
    await request(t.http)
      .post('/api/auth/token')
      .send({ email: 'ＯＷＮＥＲ@example.test', password: OWNER.password })
      .expect(200);
    await createUser(t.http, owner, 'auditor', 'bob@example.test');
  });

  it('V13.1.x API routes are case-sensitive: /API/... never reaches them, with or without the cookie', async () => {
    const console = new ConsoleSession(t.http);
    await console.signIn();
    for (const path of ['/API/admin/users', '/Api/admin/users', '/api/ADMIN/users']) {
      const res = await console.agent.get(path).redirects(0);
      expect({ path, status: res.status }).toEqual({ path, status: 404 });
      expect(res.text).not.toContain(OWNER.email);
    }
    await request(t.http).get('/API/auth/me').set(auth()).expect(404);
  });
});
