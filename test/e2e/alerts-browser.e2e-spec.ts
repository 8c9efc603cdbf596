/// <reference lib="dom" />
import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser, type Page } from 'playwright-core';
import { AlertsService } from '../../src/alerts/alerts.service';
import { OWNER, startTestApp, type TestApp } from '../support/test-app';

/**
 * AlertConfig and the alert history in a real browser, on a desktop and a phone-sized window:
 * htmx swaps the form with its inline error, the rules table follows its event, a row's
 * acknowledge swaps only that row, and nothing raises a script or CSP error.
 */
const CHROMIUM = process.env.KEYWARD_TEST_CHROMIUM ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium && process.env.CI) throw new Error(`CI needs Chromium at ${CHROMIUM} (apt-get install chromium)`);
if (!haveChromium) process.stderr.write(`\nNo Chromium at ${CHROMIUM}: the browser tests are skipped.\n`);

jest.setTimeout(30_000);

(haveChromium ? describe : describe.skip)('Alerts console in a browser', () => {
  let t: TestApp;
  let browser: Browser;
  let page: Page;
  let base: string;
  const problems: string[] = [];

  beforeAll(async () => {
    t = await startTestApp();
    await new Promise<void>((resolve) => t.app.getHttpServer().listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(t.app.getHttpServer().address() as AddressInfo).port}`;
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    page = await browser.newPage();
    page.on('console', (message) => {
      // The invalid rule below is answered 400 on purpose; Chromium logs that as a failed resource.
      if (message.type() === 'error' && !/status of 400/.test(message.text())) problems.push(message.text());
    });
    page.on('pageerror', (error) => problems.push(error.message));
    page.on('response', (response) => {
      const expected = response.status() === 400 && response.url() === `${base}/admin/alerts/rules`;
      if (response.status() >= 400 && !expected) problems.push(`${response.status()} ${response.url()}`);
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

  /**
   * The page's own content fits the window: nothing in it pushes it sideways (tables scroll in
   * their own box). The navigation bar is the layout's, fitted to phones separately.
   */
  const mainOverflow = () =>
    page.evaluate(() => {
      const main = document.querySelector('main')!;
      return { scroll: main.scrollWidth, client: main.clientWidth };
    });

  describe.each([
    [1280, 800],
    [390, 844],
  ])('at %i px wide', (width, height) => {
    beforeAll(() => page.setViewportSize({ width, height }));

    it('AlertConfig: a rule without thresholds gets an inline error, a good one is listed', async () => {
      await page.goto(`${base}/admin/alerts`);
      const form = page.locator('#rule-form');
      await form.locator('input[name="name"]').fill(`Limits ${width}`);
      await form.locator('select[name="kind"]').selectOption('usage_threshold');
      await form.locator('select[name="severity"]').selectOption('critical');
      await form.locator('button[type="submit"]').click();
      const error = page.locator('#rule-thresholds-error');
      await error.waitFor();
      expect(await error.textContent()).toBe('Thresholds is required for a usage_threshold rule');
      expect(await page.locator('#rule-form input[name="thresholds"]').getAttribute('aria-invalid')).toBe('true');
      // The swapped form kept what was typed.
      expect(await page.locator('#rule-form input[name="name"]').inputValue()).toBe(`Limits ${width}`);
      expect(page.url()).toBe(`${base}/admin/alerts`);

      await page.locator('#rule-form input[name="thresholds"]').fill('50, 80, 100');
      await page.locator('#rule-form button[type="submit"]').click();
      await page.locator('#rule-form .flash-success').waitFor();
      const row = page.locator('#rules-table tr', { hasText: `Limits ${width}` });
      await row.waitFor();
      expect(await row.textContent()).toContain('at 50 / 80 / 100 %');
      expect(await page.locator('#rule-thresholds-error').count()).toBe(0);
      const { scroll, client } = await mainOverflow();
      expect(scroll).toBeLessThanOrEqual(client);
      expect(await page.evaluate(() => window.innerWidth)).toBe(width);
    });

    it('history: acknowledging swaps the one row and the badge counts down on the next page', async () => {
      const [{ id }] = await t.dataSource.query(
        `INSERT INTO alerts (kind, severity, dedupe_key, message) VALUES ('expiring', 'warning', $1, $2) RETURNING id`,
        [`browser:${width}`, `Key at ${width} px expires on 2026-12-10, in 7 days`],
      );
      t.app.get(AlertsService).countChanged();
      await page.goto(`${base}/admin/alerts`);
      const badge = page.locator('#open-alert-count');
      const before = Number(await badge.textContent());
      expect(before).toBeGreaterThanOrEqual(1);
      const rowCount = await page.locator('#alerts-table tbody tr').count();
      const row = page.locator(`#alert-${id}`);
      expect(await row.textContent()).toContain('open');
      await row.locator('button:has-text("Acknowledge")').click();
      await page.waitForFunction(
        (alertId) => /acknowledged/.test(document.querySelector(`#alert-${alertId}`)?.textContent ?? ''),
        id,
      );
      expect(await page.locator(`#alert-${id} button:has-text("Acknowledge")`).count()).toBe(0);
      expect(await page.locator(`#alert-${id}`).textContent()).toContain(`by ${OWNER.email}`);
      expect(await page.locator('#alerts-table tbody tr').count()).toBe(rowCount);
      const { scroll, client } = await mainOverflow();
      expect(scroll).toBeLessThanOrEqual(client);
      const [{ state }] = await t.dataSource.query(`SELECT state FROM alerts WHERE id = $1`, [id]);
      expect(state).toBe('acknowledged');
      await page.goto(`${base}/admin/alerts`);
      const after = (await badge.count()) === 0 ? 0 : Number(await badge.textContent());
      expect(after).toBe(before - 1);
    });
  });

  describe('afterwards', () => {
    it('raised no script, CSP or unexpected HTTP error', () => {
      expect(problems).toEqual([]);
    });
  });
});
