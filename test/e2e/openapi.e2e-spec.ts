/// <reference lib="dom" />
import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { chromium } from 'playwright-core';
import request from 'supertest';
import { startTestApp, type TestApp } from '../support/test-app';

const CHROMIUM = process.env.KEYWARD_TEST_CHROMIUM ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);

/** The OpenAPI description the app serves, and its Swagger UI under the app's own CSP. */
describe('OpenAPI description', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  }, 60_000);
  afterAll(() => t.close());

  it('describes the JSON API at /api/openapi.json, tagged by controller, without the console routes', async () => {
    const res = await request(t.http).get('/api/openapi.json').expect(200);
    expect(res.headers['content-type']).toMatch(/application\/json/);
    const doc = res.body as {
      openapi: string;
      info: { title: string; version: string };
      paths: Record<string, Record<string, { tags: string[]; security?: unknown[] }>>;
    };
    expect(doc.openapi).toMatch(/^3\./);
    expect(doc.info.title).toBe('Keyward API');
    for (const [route, method] of [
      ['/api/auth/token', 'post'],
      ['/api/admin/users', 'get'],
      ['/api/admin/api-keys', 'post'],
      ['/api/admin/api-keys/{id}', 'get'],
      ['/api/admin/api-keys/{id}/rotate', 'put'],
      ['/api/admin/audit/verify', 'get'],
      ['/api/admin/usage', 'get'],
      ['/health/ready', 'get'],
    ]) {
      expect(doc.paths[route]?.[method]).toBeDefined();
    }
    expect(doc.paths['/api/admin/api-keys'].post.tags).toEqual(['Keys']);
    expect(doc.paths['/api/admin/api-keys'].post.security).toEqual([{ bearer: [] }]);
    // Request bodies say what the API validates.
    const schemas = (res.body as { components: { schemas: Record<string, Record<string, unknown>> } }).components
      .schemas;
    expect(schemas.CreateApiKeyDto).toMatchObject({
      type: 'object',
      required: expect.arrayContaining(['provider', 'name', 'key']),
      properties: { name: { type: 'string' }, priority: { type: 'integer' } },
    });
    expect((schemas.CreateApiKeyDto.required as string[]).includes('expiresAt')).toBe(false);
    expect(schemas.CreateUserDto).toMatchObject({
      properties: { email: { format: 'email' }, role: { enum: ['owner', 'admin', 'operator', 'auditor'] } },
    });
    // The console (HTML) is not part of the API description.
    expect(Object.keys(doc.paths).filter((p) => !/^\/(api|health)\b/.test(p))).toEqual([]);
  });

  (haveChromium ? it : it.skip)(
    'renders Swagger UI at /api/docs from local files, with no CSP violation or script error',
    async () => {
      await new Promise<void>((resolve) => t.app.getHttpServer().listen(0, '127.0.0.1', resolve));
      const base = `http://127.0.0.1:${(t.app.getHttpServer().address() as AddressInfo).port}`;
      const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
      try {
        const page = await browser.newPage();
        const problems: string[] = [];
        const origins = new Set<string>();
        page.on('console', (m) => m.type() === 'error' && problems.push(m.text()));
        page.on('pageerror', (e) => problems.push(e.message));
        page.on('request', (r) => origins.add(new URL(r.url()).origin));
        const res = await page.goto(`${base}/api/docs`);
        expect(res!.headers()['content-security-policy']).toContain("script-src 'self'");
        await page.waitForSelector('.opblock-tag', { timeout: 15_000 });
        const tags = await page.$$eval('.opblock-tag', (els) => els.map((e) => e.textContent?.trim() ?? ''));
        expect(tags).toEqual(expect.arrayContaining(['Keys', 'Users', 'Audit', 'Usage']));
        expect(problems).toEqual([]);
        expect([...origins].filter((o) => o !== base && o !== 'null' && !o.startsWith('data:'))).toEqual([]);
      } finally {
        await browser.close();
      }
    },
    60_000,
  );
});
