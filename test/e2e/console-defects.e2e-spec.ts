import request from 'supertest';
import { startFakeProvider, type OpenAiFakeProvider } from '../fake-providers';
import { apiToken, ConsoleSession, startTestApp, type TestApp } from '../support/test-app';

// Starting the app (and a browser) takes a while on a loaded machine; Jest's default is 5 s.
jest.setTimeout(60_000);

/** What a new admin found wrong in the console, each fixed and held here. */
describe('Console defects found by a new admin', () => {
  let t: TestApp;
  let openai: OpenAiFakeProvider;
  let token: string;
  let owner: ConsoleSession;
  const auth = () => ({ Authorization: `Bearer ${token}` });

  beforeAll(async () => {
    openai = await startFakeProvider('openai');
    process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL = openai.baseUrl;
    t = await startTestApp({
      KEYWARD_REPORTS: 'false',
      PUBLIC_URL: 'https://keyward.example.test',
      // Behind TLS in production; supertest speaks plain HTTP, which Secure cookies would not cross.
      KEYWARD_COOKIE_SECURE: 'false',
    });
    token = await apiToken(t.http);
    owner = new ConsoleSession(t.http);
    await owner.signIn();
  });

  afterAll(async () => {
    await t?.close();
    await openai?.close();
    delete process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL;
  });

  it('a blank price is refused, not saved as a $0 override, and the row keeps its real source', async () => {
    await owner.page('/admin/providers/openai');
    const res = await owner.htmx('post', '/admin/providers/openai/pricing', {
      model: 'gpt-4o-mini',
      input: '',
      output: '0.6',
      cachedInput: '',
    });
    expect(res.status).toBe(400);
    expect(res.text).toContain('Not saved');
    expect(res.text).toContain('Input price is required');
    expect(res.text).not.toMatch(/\binput: /);
    // Nothing was saved: the row still says the plugin's price applies, with no Reset button.
    expect(res.text).toMatch(/<td>plugin<\/td>/);
    expect(res.text).not.toContain('/reset');
    const stored = await t.dataSource.query(`SELECT * FROM provider_prices WHERE model = 'gpt-4o-mini'`);
    expect(stored).toEqual([]);
    const api = await request(t.http)
      .put('/api/admin/providers/openai/pricing')
      .set(auth())
      .send({ prices: [{ model: 'gpt-4o-mini', input: '', output: 1 }] });
    expect(api.status).toBe(400);
    // A real 0 is still a deliberate price.
    const zero = await owner.htmx('post', '/admin/providers/openai/pricing', {
      model: 'gpt-4o-mini',
      input: '0',
      output: '0',
    });
    expect(zero.status).toBe(200);
    expect(zero.text).toContain('saved');
  });

  it('a pasted key with spaces around it is stored, not called the wrong format', async () => {
    const secret = openai.generateKey();
    const res = await request(t.http)
      .post('/api/admin/api-keys')
      .set(auth())
      .send({ provider: 'openai', name: 'Pasted', key: `  ${secret}\n` })
      .expect(201);
    expect(res.body.key.endsWith(`…${secret.slice(-4)}`)).toBe(true);
    // The console form too.
    await owner.page('/admin/keys/new');
    const other = openai.generateKey();
    const form = await owner.post('/admin/keys', { provider: 'openai', name: 'Pasted in console', key: ` ${other} ` });
    expect(form.status).toBe(303);
    // Verified with the provider as stored: the fake knows the trimmed key.
    const verify = await request(t.http).post(`/api/admin/api-keys/${res.body.id}/verify`).set(auth());
    expect(verify.status).toBeLessThan(300);
    expect(verify.body.valid).toBe(true);
  });

  it('a verify that could not reach a verdict says so, not "The provider says: not checked"', async () => {
    const secret = openai.generateKey();
    const key = await request(t.http)
      .post('/api/admin/api-keys')
      .set(auth())
      .send({ provider: 'openai', name: 'Busy', key: secret })
      .expect(201);
    openai.setKey(secret, { kind: 'failing', status: 500 });
    await owner.page(`/admin/keys/${key.body.id}`);
    const res = await owner.htmx('post', `/admin/keys/${key.body.id}/verify`, { from: 'page' });
    expect(res.text).toContain('not checked');
    expect(res.text).not.toContain('The provider says');
    expect(res.text).toContain('The key could not be checked: it answered with an error of its own');
    openai.setKey(secret, { kind: 'rate_limited', retryAfterSeconds: 5 });
    const limited = await owner.htmx('post', `/admin/keys/${key.body.id}/verify`, { from: 'page' });
    expect(limited.text).toContain('The provider accepted the key; it is rate limiting it right now.');
    openai.setKey(secret, { kind: 'revoked' });
    const refused = await owner.htmx('post', `/admin/keys/${key.body.id}/verify`, { from: 'page' });
    expect(refused.text).toContain('The provider refused the key.');
  });

  it('the key page names one spend for one period: an ended period counts from zero in both places', async () => {
    const key = await request(t.http)
      .post('/api/admin/api-keys')
      .set(auth())
      .send({ provider: 'openai', name: 'Budgeted', key: openai.generateKey() })
      .expect(201);
    await request(t.http)
      .put(`/api/admin/api-keys/${key.body.id}/limits`)
      .set(auth())
      .send({ value: 10, unit: 'usd', period: 'daily' })
      .expect(200);
    // Yesterday's count, not yet restarted by the reset job.
    await t.dataSource.query(
      `UPDATE api_keys SET usage_current = 7.5, reset_at = now() - interval '1 hour' WHERE id = $1`,
      [key.body.id],
    );
    const page = await owner.page(`/admin/keys/${key.body.id}`);
    const limits = page.text.slice(
      page.text.indexOf('id="key-limits"'),
      page.text.indexOf('</section>', page.text.indexOf('id="key-limits"')),
    );
    expect(limits).toContain('0 / 10 USD daily');
    const usage = await owner.htmx('get', `/admin/usage/keys/${key.body.id}`).expect(200);
    expect(usage.text).toContain('0 / 10 USD daily');
    expect(usage.text).toMatch(/<dt>Cost today<\/dt><dd id="key-cost-period"><strong>\$0\.00<\/strong>/);
    const api = await request(t.http).get(`/api/admin/api-keys/${key.body.id}`).set(auth()).expect(200);
    expect(api.body.usage.current).toBe(0);
    expect(new Date(api.body.usage.resetAt).getTime()).toBeGreaterThan(Date.now());
    expect(api.body.status).toBe('active');
  });

  it('the new-user form starts on the least privilege, auditor', async () => {
    const page = await owner.page('/admin/users');
    const form = page.text.slice(page.text.indexOf('id="user-form"'));
    expect(form).toMatch(/<option value="auditor" selected>/);
    expect(form).not.toMatch(/<option value="owner" selected>/);
  });

  it('errors name the field by its label, not by its API name', async () => {
    await owner.page('/admin/access-tokens');
    const res = await owner.htmx('post', '/admin/access-tokens', { name: 'labels', rateLimitPerMinute: '0' });
    expect(res.status).toBe(400);
    expect(res.text).toContain('<p class="field-error" id="token-rate-error">Requests per minute must');
    expect(res.text).not.toMatch(/rateLimitPerMinute must/);
    const past = await owner.htmx('post', '/admin/access-tokens', { name: 'labels', expiresAt: '2001-01-01T00:00' });
    expect(past.status).toBe(400);
    expect(past.text).toMatch(/id="token-expires-error">Expires must/);
    expect(past.text).not.toMatch(/expiresAt must/);
    // The key form too: its past expiry is checked by the service, after the form's own checks.
    await owner.page('/admin/keys/new');
    const key = await owner.post('/admin/keys', {
      provider: 'openai',
      name: 'labels',
      key: openai.generateKey(),
      expiresAt: '2001-01-01T00:00',
    });
    expect(key.status).toBe(400);
    expect(key.text).toMatch(/Expires must be in the future/);
    expect(key.text).not.toMatch(/expiresAt must/);
  });

  it('the one-time token has a copy button and an SDK snippet, with no inline script', async () => {
    await owner.page('/admin/access-tokens');
    const res = await owner.htmx('post', '/admin/access-tokens', { name: 'with snippet' });
    expect(res.status).toBe(201);
    const tokenValue = /id="new-token">(kw_[^<]+)</.exec(res.text)![1];
    expect(res.text).toContain('data-copy="#new-token"');
    expect(res.text).toContain('data-copy="#new-token-snippet"');
    expect(res.text).toContain("baseURL: 'https://keyward.example.test/proxy/openai/v1'");
    expect(res.text).toContain('process.env.KEYWARD_TOKEN');
    // The snippet reads the token from the environment; the token is on the page once.
    expect(res.text.split(tokenValue)).toHaveLength(2);
    expect(res.text).not.toMatch(/<script(?![^>]*src=)/);
    expect(res.headers['cache-control']).toBe('no-store');
    const js = await request(t.http).get('/assets/js/copy.js').expect(200);
    expect(js.headers['content-type']).toMatch(/javascript/);
    const page = await owner.page('/admin/access-tokens');
    expect(page.text).toContain('<script src="/assets/js/copy.js" defer></script>');
  });
});
