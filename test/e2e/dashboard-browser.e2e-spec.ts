/// <reference lib="dom" />
import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser, type Page } from 'playwright-core';
import request from 'supertest';
import { UsageRecorder, type UsageRecord } from '../../src/usage/usage-recorder';
import { startFakeProvider, type OpenAiFakeProvider } from '../fake-providers';
import { apiToken, OWNER, startTestApp, type TestApp } from '../support/test-app';

// Starting the app (and a browser) takes a while on a loaded machine; Jest's default is 5 s.
jest.setTimeout(60_000);

/**
 * The dashboard, the usage page, a report and an access token's page in a real browser at a
 * desktop width (1280 px) and a phone's (390 px): nothing wider than the window, the key figures
 * on screen, the phone's menu behind its toggle, no script or CSP error.
 */
const CHROMIUM = process.env.KEYWARD_TEST_CHROMIUM ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium && process.env.CI) throw new Error(`CI needs Chromium at ${CHROMIUM} (apt-get install chromium)`);
if (!haveChromium) process.stderr.write(`\nNo Chromium at ${CHROMIUM}: the browser tests are skipped.\n`);

(haveChromium ? describe : describe.skip)('Dashboard and usage in a browser', () => {
  let t: TestApp;
  let openai: OpenAiFakeProvider;
  let browser: Browser;
  let page: Page;
  let base: string;
  let tokenId: string;
  let reportId: string;
  /** When the seven days of usage were seeded (UTC midnights, today and the six before). */
  const seeded: Date[] = [];
  const problems: string[] = [];

  beforeAll(async () => {
    openai = await startFakeProvider('openai');
    process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL = openai.baseUrl;
    t = await startTestApp({ KEYWARD_REPORTS: 'false' });
    const bearer = { Authorization: `Bearer ${await apiToken(t.http)}` };
    const key = await request(t.http)
      .post('/api/admin/api-keys')
      .set(bearer)
      .send({ provider: 'openai', name: 'A rather long production key name for the phone', key: openai.generateKey() })
      .expect(201);
    tokenId = (
      await request(t.http).post('/api/admin/access-tokens').set(bearer).send({ name: 'checkout-service' }).expect(201)
    ).body.id;
    const now = new Date();
    const today = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate());
    const recorder = t.app.get(UsageRecorder);
    for (let d = 0; d < 7; d++) {
      seeded.push(new Date(today - d * 86_400_000));
      recorder.record({
        timestamp: seeded[d],
        keyId: key.body.id,
        provider: 'openai',
        accessTokenId: tokenId,
        endpoint: '/v1/chat/completions',
        model: 'gpt-4o-mini-with-a-long-fine-tune-name',
        inputTokens: 1200,
        outputTokens: 800,
        cachedInputTokens: 0,
        totalTokens: 2000,
        cost: 1.25,
        unpriced: false,
        latencyMs: 50,
        success: true,
        errorType: null,
        status: 200,
        attempt: 1,
        stream: false,
        source: 'gateway',
      } satisfies UsageRecord);
    }
    await recorder.flush();
    const day = new Date(today).toISOString().slice(0, 10);
    reportId = (await request(t.http).post('/api/admin/reports').set(bearer).send({ from: day, to: day }).expect(201))
      .body.id;

    await new Promise<void>((resolve) => t.app.getHttpServer().listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(t.app.getHttpServer().address() as AddressInfo).port}`;
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
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

  const overflow = () =>
    page.evaluate(() => ({ scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth }));

  async function expectFits(url: string) {
    await page.goto(`${base}${url}`);
    const { scrollWidth, innerWidth } = await overflow();
    // The url in the expectation names the page that overflowed.
    expect({ url, fits: scrollWidth <= innerWidth, scrollWidth }).toEqual({ url, fits: true, scrollWidth });
  }

  for (const width of [1280, 390]) {
    describe(`at ${width} px`, () => {
      beforeAll(async () => {
        await page.setViewportSize({ width, height: 900 });
      });

      it('the dashboard fits and shows the month-to-date spend and top spenders', async () => {
        await expectFits('/admin');
        await expect(page.locator('#dash-mtd').isVisible()).resolves.toBe(true);
        const mtd = await page.locator('#dash-mtd').textContent();
        expect(mtd).toMatch(/^\$\d+\.\d{2}$/);
        expect(Number(mtd!.slice(1))).toBeGreaterThan(0);
        await expect(page.locator('#dash-projected').isVisible()).resolves.toBe(true);
        await expect(page.locator('#dash-top-tokens').getByText('checkout-service').isVisible()).resolves.toBe(true);
        await expect(page.locator('#dash-open-alerts').isVisible()).resolves.toBe(true);
        await expect(page.locator('svg.sparkline').isVisible()).resolves.toBe(true);
      });

      it('the usage page, a report and a token page fit; wide tables scroll inside their own box', async () => {
        await expectFits('/admin/usage');
        await expect(page.locator('#usage-metrics dd').first().isVisible()).resolves.toBe(true);
        await expect(page.locator('#usage-by-token').getByText('checkout-service').isVisible()).resolves.toBe(true);
        await expectFits(`/admin/reports/${reportId}`);
        await expect(page.locator('#report-totals').isVisible()).resolves.toBe(true);
        await expectFits(`/admin/usage/tokens/${tokenId}`);
        // This month's part of the seven days at $1.25 (counted from the seeded days, so that a
        // run across midnight at the start of a month expects what the page shows).
        const month = new Date().toISOString().slice(0, 7);
        const daysThisMonth = seeded.filter((d) => d.toISOString().slice(0, 7) === month).length;
        await expect(page.locator('#token-spend').textContent()).resolves.toBe(`$${(daysThisMonth * 1.25).toFixed(2)}`);
        await expectFits('/admin/keys');
        await expectFits('/admin/access-tokens');
      });
    });
  }

  it('on a phone the menu is behind its toggle and fits when opened', async () => {
    await page.setViewportSize({ width: 390, height: 900 });
    await page.goto(`${base}/admin`);
    const nav = page.locator('nav[aria-label="Main"]');
    await expect(nav.isVisible()).resolves.toBe(false);
    await page.click('label.nav-toggle-label');
    await expect(nav.isVisible()).resolves.toBe(true);
    const box = await nav.boundingBox();
    expect(box!.width).toBeLessThanOrEqual(390);
    expect((await overflow()).scrollWidth).toBeLessThanOrEqual(390);
    await Promise.all([page.waitForURL(`${base}/admin/usage`), nav.getByText('Usage').click()]);
    await page.setViewportSize({ width: 1280, height: 900 });
    await expect(page.locator('nav[aria-label="Main"]').isVisible()).resolves.toBe(true);
  });

  it('ran without script errors or Content-Security-Policy violations', () => {
    expect(problems).toEqual([]);
  });
});
