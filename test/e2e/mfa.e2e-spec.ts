import * as OTPAuth from 'otpauth';
import request from 'supertest';
import { startFakeProvider, type OpenAiFakeProvider } from '../fake-providers';
import { apiToken, ConsoleSession, createUser, csrfFrom, OWNER, startTestApp, type TestApp } from '../support/test-app';

/** A TOTP code `stepsAhead` 30-second steps from now (the server accepts ±1 step, each once). */
function codeFor(secret: string, stepsAhead = 0): string {
  const totp = new OTPAuth.TOTP({ secret: OTPAuth.Secret.fromBase32(secret), digits: 6, period: 30 });
  return totp.generate({ timestamp: Date.now() + stepsAhead * 30_000 });
}

describe('MFA: enrolment, recovery codes and step-up on sensitive operations', () => {
  let t: TestApp;
  let openai: OpenAiFakeProvider;
  let token: string;
  let secret: string;
  let recoveryCodes: string[];

  const api = () => ({
    post: (url: string, bearer = token) => request(t.http).post(url).set('Authorization', `Bearer ${bearer}`),
  });
  const audit = (action: string) =>
    t.dataSource.query<{ outcome: string; reason: string | null; details: Record<string, unknown> }[]>(
      `SELECT outcome, reason, details FROM audit_log WHERE action = $1 ORDER BY seq`,
      [action],
    );
  async function addKey(name: string): Promise<string> {
    const res = await api()
      .post('/api/admin/api-keys')
      .send({ provider: 'openai', name, key: openai.generateKey() })
      .expect(201);
    return (res.body as { id: string }).id;
  }
  const revokedAt = async (id: string) =>
    ((await t.dataSource.query(`SELECT revoked_at FROM api_keys WHERE id = $1`, [id])) as { revoked_at: Date }[])[0]
      .revoked_at;

  beforeAll(async () => {
    openai = await startFakeProvider('openai');
    process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL = openai.baseUrl;
    t = await startTestApp();
    token = await apiToken(t.http);
  });
  afterAll(async () => {
    await t.close();
    await openai.close();
    delete process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL;
  });

  it('lets a user without a second factor through while MFA is optional', async () => {
    const id = await addKey('No MFA yet');
    await api().post(`/api/admin/api-keys/${id}/revoke`).expect(200);
  });

  it('enrols with a QR code, confirms with a first code and hands out 10 recovery codes once', async () => {
    const enrol = await api().post('/api/auth/mfa/enrol').expect(200);
    const body = enrol.body as { secret: string; otpauthUrl: string; qrCode: string };
    expect(body.qrCode).toMatch(/^data:image\/svg\+xml;base64,/);
    expect(Buffer.from(body.qrCode.split(',')[1], 'base64').toString()).toContain('<svg');
    expect(body.otpauthUrl).toMatch(/^otpauth:\/\/totp\/Keyward:owner%40example\.test\?/);
    secret = body.secret;

    const wrong = await api().post('/api/auth/mfa/confirm').send({ code: '000000' }).expect(400);
    expect(wrong.body).toMatchObject({ type: 'urn:keyward:problem:mfa-code-invalid' });

    const confirm = await api()
      .post('/api/auth/mfa/confirm')
      .send({ code: codeFor(secret) })
      .expect(200);
    recoveryCodes = (confirm.body as { recoveryCodes: string[] }).recoveryCodes;
    expect(recoveryCodes).toHaveLength(10);
    expect(new Set(recoveryCodes).size).toBe(10);

    const status = await request(t.http).get('/api/auth/mfa').set('Authorization', `Bearer ${token}`).expect(200);
    expect(status.body).toMatchObject({ enrolled: true, recoveryCodesLeft: 10, requiredForAll: false });

    // The secret is sealed and the codes hashed: neither is stored, logged or audited in clear.
    const rows = JSON.stringify(await t.dataSource.query(`SELECT * FROM mfa_factors`));
    const codes = JSON.stringify(await t.dataSource.query(`SELECT * FROM mfa_recovery_codes`));
    const auditText = JSON.stringify(await t.dataSource.query(`SELECT * FROM audit_log`));
    for (const text of [rows, codes, auditText, t.logs.text]) {
      expect(text).not.toContain(secret);
      for (const code of recoveryCodes) expect(text).not.toContain(code);
    }
    expect((await audit('mfa.enrol')).map((r) => r.outcome)).toEqual(['success']);
    expect((await audit('mfa.confirm')).map((r) => r.outcome)).toEqual(['failure', 'success']);
    // Enrolment cannot silently replace a working factor.
    await api().post('/api/auth/mfa/enrol').expect(409);
  });

  it('refuses a revoke without a fresh second factor with 401 mfa-required, then lets it through with the code', async () => {
    const id = await addKey('Step-up API');
    const refused = await api().post(`/api/admin/api-keys/${id}/revoke`).expect(401);
    expect(refused.headers['content-type']).toMatch(/application\/problem\+json/);
    expect(refused.body).toMatchObject({
      type: 'urn:keyward:problem:mfa-required',
      status: 401,
      header: 'x-keyward-mfa',
      stepUpMinutes: 10,
    });
    expect(await revokedAt(id)).toBeNull();

    const wrong = await api().post(`/api/admin/api-keys/${id}/revoke`).set('x-keyward-mfa', '123456').expect(401);
    expect(wrong.body).toMatchObject({ type: 'urn:keyward:problem:mfa-required' });
    expect(await revokedAt(id)).toBeNull();

    await api().post(`/api/admin/api-keys/${id}/revoke`).set('x-keyward-mfa', codeFor(secret, 1)).expect(200);
    expect(await revokedAt(id)).not.toBeNull();

    // Both the refusals and the success are in the audit log.
    const required = await audit('mfa.required');
    expect(required.map((r) => [r.outcome, r.reason])).toEqual([
      ['denied', 'required'],
      ['denied', 'wrong-code'],
    ]);
    const verified = await audit('mfa.verify');
    expect(verified.map((r) => r.outcome)).toEqual(['failure', 'success']);
    const revokes = await t.dataSource.query<{ outcome: string; status: number }[]>(
      `SELECT outcome, status FROM audit_log WHERE action = 'api-key.revoke' AND target_id = $1 ORDER BY seq`,
      [id],
    );
    expect(revokes).toEqual([
      { outcome: 'failure', status: 401 },
      { outcome: 'failure', status: 401 },
      { outcome: 'success', status: 200 },
    ]);
  });

  it('never accepts the same code twice', async () => {
    const id = await addKey('Replay');
    const code = codeFor(secret, 1); // used in the test above
    await api().post(`/api/admin/api-keys/${id}/revoke`).set('x-keyward-mfa', code).expect(401);
    expect(await revokedAt(id)).toBeNull();
  });

  it('accepts each recovery code once, and records its use', async () => {
    const first = await addKey('Recovery 1');
    const second = await addKey('Recovery 2');
    await api().post(`/api/admin/api-keys/${first}/revoke`).set('x-keyward-mfa', recoveryCodes[0]).expect(200);
    await api()
      .post(`/api/admin/api-keys/${second}/revoke`)
      .set('x-keyward-mfa', recoveryCodes[0].toUpperCase())
      .expect(401);
    expect(await revokedAt(second)).toBeNull();
    const used = await audit('mfa.recovery-code-used');
    expect(used).toHaveLength(1);
    expect(used[0].details).toMatchObject({ recoveryCodesLeft: 9 });
  });

  it('mints a step-up JWT with a code at sign-in, which passes sensitive routes without a header', async () => {
    const res = await request(t.http)
      .post('/api/auth/token')
      .send({ ...OWNER, mfaCode: recoveryCodes[1] })
      .expect(200);
    const stepUp = (res.body as { accessToken: string }).accessToken;
    // An account with a second factor gets no token for the password alone.
    const passwordOnly = await request(t.http).post('/api/auth/token').send(OWNER).expect(401);
    expect(passwordOnly.body).toMatchObject({ type: 'urn:keyward:problem:mfa-required', field: 'mfaCode' });
    const id = await addKey('Step-up token');
    await api().post(`/api/admin/api-keys/${id}/revoke`, stepUp).expect(200);
    await request(t.http)
      .post('/api/auth/token')
      .send({ ...OWNER, mfaCode: recoveryCodes[1] })
      .expect(401);
  });

  describe('in the console', () => {
    let owner: ConsoleSession;

    /** Signs in with password and code: the sign-in's second factor counts as a fresh step-up. */
    async function signInWithCode(code: string): Promise<ConsoleSession> {
      const s = new ConsoleSession(t.http);
      await s.page('/login');
      const first = await s.post('/login', { email: OWNER.email, password: OWNER.password });
      expect(first.status).toBe(200);
      expect(first.text).toContain('action="/login/mfa"');
      s.csrf = csrfFrom(first.text) ?? s.csrf;
      const second = await s.post('/login/mfa', { code });
      expect(second.status).toBe(303);
      await s.page('/admin');
      return s;
    }
    /** As if the step-up was given longer ago than the window (10 minutes). */
    async function stepUpExpired(): Promise<void> {
      await t.dataSource.query(
        `UPDATE sessions SET sess = jsonb_set(sess::jsonb, '{mfaVerifiedAt}',
           to_jsonb((extract(epoch FROM now()) * 1000 - 11 * 60000)::bigint))::json
          WHERE sess->>'mfaVerifiedAt' IS NOT NULL`,
      );
    }

    beforeAll(async () => {
      owner = await signInWithCode(recoveryCodes[6]);
      await stepUpExpired();
    });

    it('asks an account with a second factor for a code at sign-in, with no session until it is given', async () => {
      const s = new ConsoleSession(t.http);
      await s.page('/login');
      const before = ((await t.dataSource.query(`SELECT count(*)::int AS n FROM sessions`)) as { n: number }[])[0].n;
      const first = await s.post('/login', { email: OWNER.email, password: OWNER.password });
      expect(first.text).toContain('Second factor');
      s.csrf = csrfFrom(first.text) ?? s.csrf;
      const wrong = await s.post('/login/mfa', { code: '000000' });
      expect(wrong.status).toBe(401);
      expect(wrong.text).toContain('wrong or was already used');
      expect(((await t.dataSource.query(`SELECT count(*)::int AS n FROM sessions`)) as { n: number }[])[0].n).toBe(
        before,
      );
      expect((await s.agent.get('/admin').redirects(0)).headers.location).toMatch(/^\/login/);
      // A code without the password step before it (no signed pending cookie) leads nowhere.
      const stranger = new ConsoleSession(t.http);
      await stranger.page('/login');
      const forged = await stranger.post('/login/mfa', { code: recoveryCodes[8] });
      expect(forged.status).toBe(401);
      expect(forged.text).toContain('The sign-in expired');
    });

    it('answers an htmx revoke with a code prompt in place, which continues the revoke with the code', async () => {
      const id = await addKey('Console step-up');
      const refused = await owner
        .htmx('post', `/admin/keys/${id}/revoke`, { confirm: 'yes' })
        .set('HX-Target', 'section#key-danger');
      expect(refused.status).toBe(401);
      expect(refused.headers['hx-retarget']).toBe('#key-danger');
      expect(refused.headers['hx-reswap']).toBe('outerHTML');
      expect(refused.text).toMatch(/^<section class="card" id="key-danger">/);
      expect(refused.text).toContain(`hx-post="/admin/keys/${id}/revoke" hx-target="#key-danger"`);
      expect(refused.text).toContain('<input type="hidden" name="confirm" value="yes">');
      expect(refused.text).toContain('name="mfaPasscode"');
      expect(await revokedAt(id)).toBeNull();

      const done = await owner
        .htmx('post', `/admin/keys/${id}/revoke`, { confirm: 'yes', mfaPasscode: recoveryCodes[2] })
        .set('HX-Target', 'section#key-danger');
      // The key page reloads itself after a revoke (HX-Redirect), as it does without the prompt.
      expect(done.status).toBe(204);
      expect(done.headers['hx-redirect']).toContain(`/admin/keys/${id}`);
      expect(await revokedAt(id)).not.toBeNull();

      // Verified in this session: the next sensitive action within the window needs no code.
      const next = await addKey('Console no second prompt');
      const again = await owner.htmx('post', `/admin/keys/${next}/revoke`, { confirm: 'yes', from: 'list' });
      expect(again.status).toBe(200);
      expect(await revokedAt(next)).not.toBeNull();
    });

    it('without JavaScript shows a page whose form continues the action', async () => {
      const s = await signInWithCode(recoveryCodes[7]);
      await stepUpExpired();
      const id = await addKey('Plain step-up');
      const refused = await s.post(`/admin/keys/${id}/revoke`, { confirm: 'yes' });
      expect(refused.status).toBe(401);
      expect(refused.text).toContain('Confirm with your second factor');
      expect(refused.text).toContain(`<form method="post" action="/admin/keys/${id}/revoke"`);
      expect(refused.text).not.toContain('hx-post');
      s.csrf = csrfFrom(refused.text) ?? s.csrf;
      const done = await s.post(`/admin/keys/${id}/revoke`, { confirm: 'yes', mfaPasscode: recoveryCodes[3] });
      expect(done.status).toBe(303);
      expect(await revokedAt(id)).not.toBeNull();
    });

    it('turns the second factor off only with a code', async () => {
      const user = await createUser(t.http, token, 'operator');
      const userToken = await apiToken(t.http, user.email, user.password);
      const enrol = await request(t.http)
        .post('/api/auth/mfa/enrol')
        .set('Authorization', `Bearer ${userToken}`)
        .expect(200);
      const userSecret = (enrol.body as { secret: string }).secret;
      await request(t.http)
        .post('/api/auth/mfa/confirm')
        .set('Authorization', `Bearer ${userToken}`)
        .send({ code: codeFor(userSecret) })
        .expect(200);
      await request(t.http)
        .post('/api/auth/mfa/disable')
        .set('Authorization', `Bearer ${userToken}`)
        .send({ code: '999999' })
        .expect(401);
      await request(t.http)
        .post('/api/auth/mfa/disable')
        .set('Authorization', `Bearer ${userToken}`)
        .send({ code: codeFor(userSecret, 1) })
        .expect(200);
      const status = await request(t.http).get('/api/auth/mfa').set('Authorization', `Bearer ${userToken}`);
      expect(status.body).toMatchObject({ enrolled: false });
      expect((await audit('mfa.disable')).map((r) => r.outcome)).toEqual(['success']);
    });
  });

  it('when an owner requires MFA of everyone: users without it enrol at sign-in, and the API refuses them', async () => {
    const user = await createUser(t.http, token, 'admin');
    await request(t.http)
      .put('/api/admin/mfa-policy')
      .set('Authorization', `Bearer ${token}`)
      .set('x-keyward-mfa', recoveryCodes[4])
      .send({ requiredForAll: true })
      .expect(200);
    expect((await audit('mfa.required-for-all'))[0].details).toMatchObject({ requiredForAll: true });

    const s = new ConsoleSession(t.http);
    await s.page('/login');
    const signIn = await s.post('/login', { email: user.email, password: user.password });
    expect(signIn.headers.location).toBe('/account');
    const elsewhere = await s.agent.get('/admin/keys').redirects(0);
    expect(elsewhere.status).toBe(303);
    expect(elsewhere.headers.location).toBe('/account');
    const account = await s.page('/account');
    expect(account.text).toContain('An owner requires a second factor for every account');

    const userToken = await apiToken(t.http, user.email, user.password);
    const id = await addKey('Required for all');
    const refused = await api().post(`/api/admin/api-keys/${id}/revoke`, userToken).expect(401);
    expect(refused.body).toMatchObject({ type: 'urn:keyward:problem:mfa-required' });
    expect((refused.body as { detail: string }).detail).toContain('enrol a second factor');

    await request(t.http)
      .put('/api/admin/mfa-policy')
      .set('Authorization', `Bearer ${token}`)
      .set('x-keyward-mfa', recoveryCodes[5])
      .send({ requiredForAll: false })
      .expect(200);
  });

  it('never wrote a code or the secret into the audit log or the logs', async () => {
    const auditText = JSON.stringify(await t.dataSource.query(`SELECT * FROM audit_log`));
    for (const text of [auditText, t.logs.text]) {
      expect(text).not.toContain(secret);
      for (const code of recoveryCodes) {
        expect(text).not.toContain(code);
        expect(text).not.toContain(code.toUpperCase());
      }
    }
    expect(auditText).not.toContain('mfaPasscode');
  });
});
