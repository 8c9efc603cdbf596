/// <reference lib="dom" />
import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser, type Page } from 'playwright-core';
import request from 'supertest';
import { apiToken, OWNER, startTestApp, type TestApp } from '../support/test-app';

/**
 * The access token page in a real browser: the budget editor and the grants swap their own
 * section through htmx (also for a refused form), with no script or CSP error on the way.
 */
const CHROMIUM = process.env.KEYWARD_TEST_CHROMIUM ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium && process.env.CI) throw new Error(`CI needs Chromium at ${CHROMIUM} (apt-get install chromium)`);

(haveChromium ? describe : describe.skip)('Access token budgets in a browser', () => {
  let t: TestApp;
  let browser: Browser;
  let page: Page;
  let base: string;
  let tokenId: string;
  const problems: string[] = [];

  beforeAll(async () => {
    t = await startTestApp();
    await new Promise<void>((resolve) => t.app.getHttpServer().listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(t.app.getHttpServer().address() as AddressInfo).port}`;
    const owner = await apiToken(t.http);
    const created = await request(t.http)
      .post('/api/admin/access-tokens')
      .set('Authorization', `Bearer ${owner}`)
      .send({ name: 'Browser app', budgets: [{ unit: 'usd', period: 'monthly', limit: 100 }] })
      .expect(201);
    tokenId = (created.body as { id: string }).id;

    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    page = await browser.newPage();
    page.on('console', (message) => {
      if (message.type() === 'error' && !/status of 400/.test(message.text())) problems.push(message.text());
    });
    page.on('pageerror', (error) => problems.push(error.message));
    page.on('response', (response) => {
      // The refused budget form is expected to answer 400.
      if (response.status() >= 400 && !(response.status() === 400 && response.url().endsWith('/budgets'))) {
        problems.push(`${response.status()} ${response.url()}`);
      }
    });
    await page.goto(`${base}/login`);
    await page.fill('input[name="email"]', OWNER.email);
    await page.fill('input[name="password"]', OWNER.password);
    await Promise.all([page.waitForURL(`${base}/admin`), page.click('button[type="submit"]')]);
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await t?.close();
  });

  it('adds a budget row, saves two budgets and shows an inline error, swapping only the section', async () => {
    await page.goto(`${base}/admin/access-tokens/${tokenId}`);
    const section = page.locator('#token-budgets');
    expect(await section.locator('tbody tr').count()).toBe(2);

    await section.locator('button:has-text("Add a budget row")').click();
    await page.waitForFunction(() => document.querySelectorAll('#token-budgets tbody tr').length === 3);

    await page.fill('input[name="limit_1"]', '500');
    await page.selectOption('select[name="unit_1"]', 'requests');
    await page.selectOption('select[name="period_1"]', 'daily');
    await section.locator('button:has-text("Save budgets")').click();
    await page.waitForFunction(() =>
      /Budgets saved \(2\)/.test(document.querySelector('#token-budgets')?.textContent ?? ''),
    );
    expect(page.url()).toBe(`${base}/admin/access-tokens/${tokenId}`);
    expect(await page.locator('#token-budgets meter').count()).toBe(2);

    await page.fill('input[name="limit_0"]', 'lots');
    await page.locator('#token-budgets button:has-text("Save budgets")').click();
    await page.waitForSelector('#budget-error-0');
    expect(await page.textContent('#budget-error-0')).toMatch(/limit must be a number/);
    const [row] = await t.dataSource.query(
      `SELECT "limit"::float AS limit FROM access_token_budgets WHERE access_token_id = $1 AND unit = 'usd'`,
      [tokenId],
    );
    expect(row.limit).toBe(100);
  });

  it('saves grants with the checkboxes', async () => {
    await page.goto(`${base}/admin/access-tokens/${tokenId}`);
    await page.check('#token-scopes input[value="files"]');
    await page.locator('#token-scopes button:has-text("Save grants")').click();
    await page.waitForFunction(() =>
      /Grants saved: files/.test(document.querySelector('#token-scopes')?.textContent ?? ''),
    );
    const [row] = await t.dataSource.query(`SELECT scopes FROM access_tokens WHERE id = $1`, [tokenId]);
    expect(row.scopes).toEqual(['files']);
    expect(problems).toEqual([]);
  });
});
