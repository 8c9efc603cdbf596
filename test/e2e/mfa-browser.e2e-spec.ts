/// <reference lib="dom" />
import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import * as OTPAuth from 'otpauth';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import request from 'supertest';
import { startFakeProvider, type OpenAiFakeProvider } from '../fake-providers';
import { apiToken, createUser, OWNER, startTestApp, type TestApp } from '../support/test-app';

/**
 * MFA in a real browser: enrolment on the Account page (the QR code must load under the CSP),
 * then the in-place code prompt htmx shows when a revoke or a role change needs a fresh
 * second factor, and the action carrying on once the code is given.
 */
const CHROMIUM = process.env.KEYWARD_TEST_CHROMIUM ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium && process.env.CI) throw new Error(`CI needs Chromium at ${CHROMIUM} (apt-get install chromium)`);
if (!haveChromium) process.stderr.write(`\nNo Chromium at ${CHROMIUM}: the browser tests are skipped.\n`);

jest.setTimeout(60_000);

(haveChromium ? describe : describe.skip)('MFA in a browser', () => {
  let t: TestApp;
  let openai: OpenAiFakeProvider;
  let browser: Browser;
  let base: string;
  let token: string;
  let recoveryCodes: string[] = [];
  /** Recovery codes used so far (each works once). */
  let used = 0;
  const problems: string[] = [];

  async function signedIn(): Promise<{ context: BrowserContext; page: Page }> {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.on('pageerror', (error) => problems.push(error.message));
    page.on('console', (message) => {
      // 401 is the prompt itself (asserted below); anything else logged as an error is a problem.
      const expected = message.text().includes('status of 401');
      if (message.type() === 'error' && !expected) problems.push(message.text());
    });
    page.on('dialog', (dialog) => void dialog.accept());
    await page.goto(`${base}/login`);
    await page.fill('input[name="email"]', OWNER.email);
    await page.fill('input[name="password"]', OWNER.password);
    const code = recoveryCodes[used++];
    if (!code) {
      await Promise.all([page.waitForURL(`${base}/admin`), page.click('button[type="submit"]')]);
      return { context, page };
    }
    // With a second factor, the sign-in asks for a code; the session then starts with a
    // fresh step-up, which is aged here past its 10 minutes so that the prompt shows.
    await Promise.all([page.waitForURL(`${base}/login`), page.click('button[type="submit"]')]);
    await page.fill('input[name="code"]', code);
    await Promise.all([page.waitForURL(`${base}/admin`), page.click('button:has-text("Sign in")')]);
    await t.dataSource.query(
      `UPDATE sessions SET sess = jsonb_set(sess::jsonb, '{mfaVerifiedAt}',
         to_jsonb((extract(epoch FROM now()) * 1000 - 11 * 60000)::bigint))::json
        WHERE sess->>'mfaVerifiedAt' IS NOT NULL`,
    );
    return { context, page };
  }

  async function addKey(name: string): Promise<string> {
    const res = await request(t.http)
      .post('/api/admin/api-keys')
      .set('Authorization', `Bearer ${token}`)
      .send({ provider: 'openai', name, key: openai.generateKey() })
      .expect(201);
    return (res.body as { id: string }).id;
  }

  beforeAll(async () => {
    openai = await startFakeProvider('openai');
    process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL = openai.baseUrl;
    t = await startTestApp();
    await new Promise<void>((resolve) => t.app.getHttpServer().listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(t.app.getHttpServer().address() as AddressInfo).port}`;
    token = await apiToken(t.http);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  });
  afterAll(async () => {
    await browser?.close();
    await t?.close();
    await openai?.close();
    delete process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL;
  });

  it('enrols on the Account page: a QR code, a first code, ten recovery codes shown once', async () => {
    const { context, page } = await signedIn();
    await page.goto(`${base}/account`);
    await page.click('button:has-text("Set up an authenticator")');
    const qr = page.locator('img.qr');
    await qr.waitFor();
    // Loaded, not blocked by the CSP: a data: SVG image.
    await page.waitForFunction(() => (document.querySelector('img.qr') as HTMLImageElement | null)?.naturalWidth);
    expect(await qr.getAttribute('src')).toMatch(/^data:image\/svg\+xml;base64,/);
    const secret = (await page.textContent('code.secret'))!.trim();
    const code = new OTPAuth.TOTP({ secret: OTPAuth.Secret.fromBase32(secret), digits: 6, period: 30 }).generate();
    await page.fill('#account-mfa input[name="code"]', code);
    await page.click('button:has-text("Turn on")');
    await page.locator('ol.recovery-codes').waitFor();
    recoveryCodes = await page.locator('ol.recovery-codes code').allTextContents();
    used = 0;
    expect(recoveryCodes).toHaveLength(10);
    expect(page.url()).toBe(`${base}/account`);
    // Shown once: the page, reloaded, has neither the secret nor the codes.
    await page.reload();
    const html = await page.content();
    expect(html).not.toContain(secret);
    for (const c of recoveryCodes) expect(html).not.toContain(c);
    expect(await page.textContent('#account-mfa')).toContain('10 recovery codes left');
    await context.close();
  });

  it('asks for the code in place when a revoke needs a fresh second factor, then revokes', async () => {
    const id = await addKey('Browser step-up');
    const { context, page } = await signedIn();
    await page.goto(`${base}/admin/keys/${id}`);
    await page.click('button:has-text("Revoke this key")');
    const prompt = page.locator('#key-danger form.mfa-prompt');
    await prompt.waitFor();
    expect(await page.textContent('#key-danger')).toContain('Confirm with your second factor');
    expect(((await t.dataSource.query(`SELECT revoked_at FROM api_keys WHERE id = $1`, [id])) as unknown[])[0]).toEqual(
      {
        revoked_at: null,
      },
    );

    // A wrong code: the prompt again, with the reason.
    await prompt.locator('input[name="mfaPasscode"]').fill('000000');
    await prompt.locator('button:has-text("Continue")').click();
    await page.locator('#key-danger .flash-error').waitFor();
    expect(await page.textContent('#key-danger')).toContain('wrong or was already used');

    await page.fill('#key-danger input[name="mfaPasscode"]', recoveryCodes[used++]);
    await Promise.all([page.waitForLoadState('load'), page.click('#key-danger button:has-text("Continue")')]);
    await page.waitForFunction(() => /revoked/i.test(document.querySelector('main')?.textContent ?? ''));
    const [row] = (await t.dataSource.query(`SELECT revoked_at FROM api_keys WHERE id = $1`, [id])) as {
      revoked_at: Date | null;
    }[];
    expect(row.revoked_at).not.toBeNull();

    const audit = await t.dataSource.query<{ action: string; outcome: string }[]>(
      `SELECT action, outcome FROM audit_log WHERE action IN ('mfa.required', 'mfa.recovery-code-used', 'api-key.revoke')
        ORDER BY seq`,
    );
    expect(audit).toEqual([
      { action: 'mfa.recovery-code-used', outcome: 'success' }, // the sign-in's second factor
      { action: 'mfa.required', outcome: 'denied' },
      { action: 'api-key.revoke', outcome: 'failure' },
      { action: 'mfa.required', outcome: 'denied' },
      { action: 'api-key.revoke', outcome: 'failure' },
      { action: 'mfa.recovery-code-used', outcome: 'success' },
      { action: 'api-key.revoke', outcome: 'success' },
    ]);
    await context.close();
  });

  it('prompts inside the table row for a role change, and swaps in the changed row', async () => {
    const user = await createUser(t.http, token, 'operator');
    const { context, page } = await signedIn();
    await page.goto(`${base}/admin/users`);
    const row = page.locator(`#user-${user.id}`);
    await row.locator('select[name="role"]').selectOption('auditor');
    await row.locator('button:has-text("Change")').click();
    await row.locator('form.mfa-prompt').waitFor();
    await row.locator('input[name="mfaPasscode"]').fill(recoveryCodes[used++]);
    await row.locator('button:has-text("Continue")').click();
    await row.locator('select[name="role"]').waitFor();
    expect(await row.locator('select[name="role"]').inputValue()).toBe('auditor');
    const [changed] = (await t.dataSource.query(`SELECT role FROM users WHERE id = $1`, [user.id])) as {
      role: string;
    }[];
    expect(changed.role).toBe('auditor');
    await context.close();
  });

  it('raised no script or CSP error', () => {
    expect(problems).toEqual([]);
  });
});
