/// <reference lib="dom" />
import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser, type Page } from 'playwright-core';
import request from 'supertest';
import { apiToken, ConsoleSession, createUser, OWNER, startTestApp, type TestApp } from '../support/test-app';

/**
 * The console's filter forms send every field, the empty ones too; empty means "not set". With
 * and without JavaScript (supertest with and without HX-Request, and Chromium typing into the
 * form), and a readable audit table.
 */
describe('Console filter forms: empty fields mean "not set"', () => {
  let t: TestApp;
  let console: ConsoleSession;
  let operatorEmail: string;

  beforeAll(async () => {
    t = await startTestApp();
    const token = await apiToken(t.http);
    operatorEmail = (await createUser(t.http, token, 'operator', 'filter-operator@example.test')).email;
    await createUser(t.http, token, 'auditor', 'filter-auditor@example.test');
    await request(t.http).post('/api/auth/token').send({ email: OWNER.email, password: 'wrong-password' }).expect(401);
    console = new ConsoleSession(t.http);
    await console.signIn();
  });
  afterAll(() => t.close());

  const auditForm = { actor: '', action: 'auth.signin', target: '', outcome: '', from: '', to: '' };

  it('filters the audit log from the form without JavaScript', async () => {
    const res = await console.agent.get('/admin/audit').query(auditForm).expect(200);
    const actions = [...res.text.matchAll(/<td><code>([a-z_.-]+)<\/code><\/td>/g)].map((m) => m[1]);
    expect(actions.length).toBeGreaterThan(0);
    expect(new Set(actions)).toEqual(new Set(['auth.signin']));
  });

  it('filters the audit log with htmx: the results fragment, no error banner', async () => {
    const res = await console
      .htmx('get', `/admin/audit?${new URLSearchParams({ ...auditForm, outcome: 'failure' })}`)
      .expect(200);
    expect(res.text).not.toContain('<html');
    expect(res.text).not.toContain('flash-error');
    expect(res.text).toContain('auth.signin');
    expect(res.text).toContain('failure');
  });

  it('shows a readable audit table: names beside ids, short user agents, details collapsed', async () => {
    const res = await console.agent
      .get('/admin/audit')
      .query({ ...auditForm, action: 'user.create' })
      .set(
        'User-Agent',
        'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36',
      )
      .expect(200);
    expect(res.text).toContain('<strong>filter-operator@example.test</strong>');
    expect(res.text).toMatch(/<details class="audit-details"><summary>[^<]*email[^<]*<\/summary><pre>/);
  });

  it('refuses a date that is not on the calendar, and a non-number page, with 400', async () => {
    const bad = await console.agent.get('/admin/audit').query({ ...auditForm, from: '2026-02-30T10:00' });
    expect(bad.status).toBe(400);
    expect(bad.text).toContain('from must be');
    const token = await apiToken(t.http);
    for (const query of [
      { from: '2026-02-30' },
      { to: '2026-13-01T00:00:00Z' },
      { page: '1e20' },
      { page: 'true' },
      { pageSize: '0x10' },
    ]) {
      const res = await request(t.http).get('/api/admin/audit').query(query).set('Authorization', `Bearer ${token}`);
      expect({ query, status: res.status }).toEqual({ query, status: 400 });
      expect(res.headers['content-type']).toMatch(/problem\+json/);
    }
    await request(t.http)
      .get('/api/admin/audit')
      .query({ from: '2026-02-28T10:00', to: '2028-02-29' })
      .set('Authorization', `Bearer ${token}`)
      .expect(200);
  });

  it('searches users with an empty role, with and without htmx', async () => {
    const plain = await console.agent.get('/admin/users').query({ q: 'filter-op', role: '' }).expect(200);
    expect(plain.text).toContain(operatorEmail);
    expect(plain.text).not.toContain('filter-auditor@example.test');
    const htmx = await console.htmx('get', '/admin/users?q=&role=auditor').expect(200);
    expect(htmx.text).toContain('filter-auditor@example.test');
    expect(htmx.text).not.toContain(operatorEmail);
  });

  it('takes empty fields on the keys, tokens and usage filters too', async () => {
    await console.agent
      .get('/admin/keys')
      .query({ provider: '', active: '', q: '', expiring: '', sort: '' })
      .expect(200);
    await console.htmx('get', '/admin/keys?provider=&active=&q=&expiring=&sort=').expect(200);
    await console.agent.get('/admin/access-tokens').query({ q: '', active: '' }).expect(200);
    await console.htmx('get', '/admin/access-tokens?q=&active=').expect(200);
    await console.agent.get('/admin/usage').query({ range: '', provider: '' }).expect(200);
  });
});

const CHROMIUM = process.env.KEYWARD_TEST_CHROMIUM ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);

(haveChromium ? describe : describe.skip)('Console filter forms in a browser', () => {
  let t: TestApp;
  let browser: Browser;
  let page: Page;
  let base: string;
  const problems: string[] = [];

  beforeAll(async () => {
    t = await startTestApp();
    const token = await apiToken(t.http);
    await createUser(t.http, token, 'operator', 'browser-operator@example.test');
    await createUser(t.http, token, 'auditor', 'browser-auditor@example.test');
    await new Promise<void>((resolve) => t.app.getHttpServer().listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(t.app.getHttpServer().address() as AddressInfo).port}`;
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    page = await browser.newPage();
    page.on('pageerror', (error) => problems.push(error.message));
    page.on('response', (response) => {
      if (response.status() >= 400) problems.push(`${response.status()} ${response.url()}`);
    });
    await page.goto(`${base}/login`);
    await page.fill('input[name="email"]', OWNER.email);
    await page.fill('input[name="password"]', OWNER.password);
    await Promise.all([page.waitForURL(`${base}/admin`), page.click('button[type="submit"]')]);
  });
  afterAll(async () => {
    await browser?.close();
    await t?.close();
  });

  it('filters the audit log as one types, with no error banner', async () => {
    await page.goto(`${base}/admin/audit`);
    await page.fill('input[name="action"]', 'user.create');
    await page.waitForFunction(() => {
      const cells = [...document.querySelectorAll('#audit-results td:nth-child(4) code')].map((c) => c.textContent);
      return cells.length > 0 && cells.every((c) => c === 'user.create');
    });
    expect(await page.locator('#flash .flash-error').count()).toBe(0);
    // Submitting sends every field, the empty ones too, and gets the same answer.
    await Promise.all([
      page.waitForResponse((r) => r.url().includes('/admin/audit?') && r.status() === 200),
      page.click('#audit-filters button[type="submit"]'),
    ]);
    const actions = await page.locator('#audit-results td:nth-child(4) code').allTextContents();
    expect(actions.length).toBeGreaterThanOrEqual(2);
    expect(new Set(actions)).toEqual(new Set(['user.create']));
    expect(page.url()).toContain('action=user.create');
    expect(problems).toEqual([]);
  });

  it('searches users with the role left at "any"', async () => {
    await page.goto(`${base}/admin/users`);
    await page.fill('input[name="q"]', 'browser-aud');
    await page.waitForFunction(() => {
      const text = document.querySelector('#users-table')?.textContent ?? '';
      return text.includes('browser-auditor@example.test') && !text.includes('browser-operator@example.test');
    });
    expect(problems).toEqual([]);
  });
});
