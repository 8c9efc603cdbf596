/// <reference lib="dom" />
import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startFakeProvider, type OpenAiFakeProvider } from '../fake-providers';
import { OWNER, startTestApp, type TestApp } from '../support/test-app';

/**
 * The key console in a real browser (Debian's Chromium, driven by playwright-core): htmx swaps,
 * the confirmation dialog of a revoke, the CSRF header htmx sends, and a page that raises no
 * script or CSP error. Skipped with a note where no Chromium is installed, required in CI.
 */
const CHROMIUM = process.env.KEYWARD_TEST_CHROMIUM ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium && process.env.CI) throw new Error(`CI needs Chromium at ${CHROMIUM} (apt-get install chromium)`);
if (!haveChromium) process.stderr.write(`\nNo Chromium at ${CHROMIUM}: the browser tests are skipped.\n`);

(haveChromium ? describe : describe.skip)('Key console in a browser', () => {
  let t: TestApp;
  let openai: OpenAiFakeProvider;
  let browser: Browser;
  let page: Page;
  let base: string;
  const problems: string[] = [];

  beforeAll(async () => {
    openai = await startFakeProvider('openai');
    process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL = openai.baseUrl;
    t = await startTestApp();
    await new Promise<void>((resolve) => t.app.getHttpServer().listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(t.app.getHttpServer().address() as AddressInfo).port}`;
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    page = await browser.newPage();
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(message.text());
    });
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
    await openai?.close();
    delete process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL;
  });

  it('adds a key through the form and shows it masked on its page', async () => {
    const secret = openai.generateKey();
    await page.goto(`${base}/admin/keys/new`);
    await page.selectOption('select[name="provider"]', 'openai');
    await page.fill('input[name="name"]', 'Browser key');
    await page.fill('input[name="key"]', secret);
    await Promise.all([page.waitForURL(/\/admin\/keys\/[0-9a-f-]{36}$/), page.click('button:has-text("Add key")')]);
    const text = await page.textContent('body');
    expect(text).toContain('Browser key');
    expect(text).toContain(`…${secret.slice(-4)}`);
    expect(await page.content()).not.toContain(secret);
  });

  it('verifies a key from the list, swapping only its row', async () => {
    await page.goto(`${base}/admin/keys`);
    const row = page.locator('tr', { hasText: 'Browser key' });
    const before = await page.locator('tr').count();
    expect(await row.textContent()).toContain('not verified');
    await row.locator('button:has-text("Verify")').click();
    // The row is replaced by the server's new one, with the provider's verdict in it.
    await page.waitForFunction(() =>
      [...document.querySelectorAll('tr')].some(
        (tr) => /Browser key/.test(tr.textContent ?? '') && !/not verified/.test(tr.textContent ?? ''),
      ),
    );
    expect(await row.locator('td').nth(4).textContent()).toMatch(/valid/i);
    expect(await page.locator('tr').count()).toBe(before);
    expect(page.url()).toBe(`${base}/admin/keys`);
  });

  it('asks before revoking: dismissed nothing happens, accepted the row shows revoked', async () => {
    await page.goto(`${base}/admin/keys`);
    const row = page.locator('tr', { hasText: 'Browser key' });
    page.once('dialog', (dialog) => void dialog.dismiss());
    await row.locator('button:has-text("Revoke")').click();
    await page.waitForTimeout(200);
    const [still] = await t.dataSource.query(`SELECT active FROM api_keys WHERE name = 'Browser key'`);
    expect(still.active).toBe(true);

    let asked = '';
    page.once('dialog', (dialog) => {
      asked = dialog.message();
      void dialog.accept();
    });
    await row.locator('button:has-text("Revoke")').click();
    await page.waitForFunction(() =>
      [...document.querySelectorAll('tr')].some(
        (tr) => /Browser key/.test(tr.textContent ?? '') && /revoked/i.test(tr.textContent ?? ''),
      ),
    );
    expect(asked).toMatch(/Revoke the key “Browser key”/);
    const [gone] = await t.dataSource.query(`SELECT active FROM api_keys WHERE name = 'Browser key'`);
    expect(gone.active).toBe(false);
    expect(await row.locator('button:has-text("Revoke")').count()).toBe(0);
  });

  it('ran without script errors or Content-Security-Policy violations', () => {
    expect(problems).toEqual([]);
  });
});
