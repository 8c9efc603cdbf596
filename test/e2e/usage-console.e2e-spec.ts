import request from 'supertest';
import { UsageRecorder, type UsageRecord } from '../../src/usage/usage-recorder';
import { startFakeProvider, type OpenAiFakeProvider } from '../fake-providers';
import { apiToken, ConsoleSession, startTestApp, type TestApp } from '../support/test-app';

// Starting the app (and a browser) takes a while on a loaded machine; Jest's default is 5 s.
jest.setTimeout(60_000);

const DAY = 24 * 3_600_000;

/**
 * The usage API's CSV and token grouping, trends with token budgets, the access-token usage
 * page, the dashboard, and a custom range on the usage page: whole pages and htmx fragments.
 */
describe('Usage by access token, trends, CSV and the dashboard', () => {
  let t: TestApp;
  let openai: OpenAiFakeProvider;
  let token: string;
  let keyId: string;
  let webId: string;
  let etlId: string;
  let owner: ConsoleSession;
  const now = new Date();
  const today = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()));
  const iso = (d: Date) => d.toISOString().slice(0, 10);
  const auth = () => ({ Authorization: `Bearer ${token}` });

  const rec = (r: Partial<UsageRecord>): UsageRecord => ({
    timestamp: today,
    keyId,
    provider: 'openai',
    accessTokenId: webId,
    endpoint: '/v1/chat/completions',
    model: 'gpt-4o-mini',
    inputTokens: 100,
    outputTokens: 50,
    cachedInputTokens: 0,
    totalTokens: 150,
    cost: 0.5,
    unpriced: false,
    latencyMs: 10,
    success: true,
    errorType: null,
    status: 200,
    attempt: 1,
    stream: false,
    source: 'gateway',
    ...r,
  });

  beforeAll(async () => {
    openai = await startFakeProvider('openai');
    process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL = openai.baseUrl;
    t = await startTestApp({ KEYWARD_REPORTS: 'false' });
    token = await apiToken(t.http);
    const key = await request(t.http)
      .post('/api/admin/api-keys')
      .set(auth())
      .send({
        provider: 'openai',
        name: 'Main key',
        key: openai.generateKey(),
        expiresAt: new Date(now.getTime() + 3 * DAY).toISOString(),
      })
      .expect(201);
    keyId = key.body.id;
    await request(t.http)
      .put(`/api/admin/api-keys/${keyId}/limits`)
      .set(auth())
      .send({ value: 100, unit: 'usd', period: 'monthly' })
      .expect(200);
    webId = (await request(t.http).post('/api/admin/access-tokens').set(auth()).send({ name: 'web-app' }).expect(201))
      .body.id;
    etlId = (
      await request(t.http).post('/api/admin/access-tokens').set(auth()).send({ name: 'etl, nightly' }).expect(201)
    ).body.id;

    // The budgets table belongs to the gateway's admission (another module); the schema both
    // sides agree on is created here when this build does not have it yet.
    await t.dataSource.query(`
      CREATE TABLE IF NOT EXISTS access_token_budgets (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        access_token_id uuid NOT NULL REFERENCES access_tokens (id) ON DELETE CASCADE,
        unit text NOT NULL, period text NOT NULL, "limit" numeric NOT NULL,
        used numeric NOT NULL DEFAULT 0, reserved numeric NOT NULL DEFAULT 0, reset_at timestamptz)`);

    const records: UsageRecord[] = [];
    // web-app: $2 a day for the last 10 days; etl: one call today, on an unpriced model.
    for (let d = 0; d < 10; d++) {
      for (let i = 0; i < 4; i++) records.push(rec({ timestamp: new Date(today.getTime() - d * DAY + i * 1000) }));
    }
    records.push(rec({ accessTokenId: etlId, model: 'my-fine-tune', cost: 0, unpriced: true }));
    // Keyward refused web-app twice today (no key, rate limit).
    records.push(
      rec({
        keyId: null,
        success: false,
        errorType: 'no_key',
        status: null,
        cost: 0,
        inputTokens: 0,
        outputTokens: 0,
        totalTokens: 0,
      }),
      rec({
        keyId: null,
        success: false,
        errorType: 'rate_limited',
        status: null,
        cost: 0,
        inputTokens: 0,
        outputTokens: 0,
        totalTokens: 0,
      }),
    );
    const recorder = t.app.get(UsageRecorder);
    records.forEach((r) => recorder.record(r));
    await recorder.flush();

    // web-app's monthly $25 budget with $20 used: at $2 a day it runs out in 2.5 days (if the
    // month lasts that long).
    const monthEnd = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1));
    await t.dataSource.query(
      `INSERT INTO access_token_budgets (access_token_id, unit, period, "limit", used, reserved, reset_at)
       VALUES ($1, 'usd', 'monthly', 25, 20, 0, $2), ($1, 'requests', 'daily', 1000, 6, 0, $3)`,
      [webId, monthEnd, new Date(today.getTime() + DAY)],
    );

    owner = new ConsoleSession(t.http);
    await owner.signIn();
  });

  afterAll(async () => {
    await t?.close();
    await openai?.close();
    delete process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL;
  });

  it('GET /api/admin/usage groups by access token, refusals included', async () => {
    const res = await request(t.http)
      .get(`/api/admin/usage?groupBy=token&from=${iso(new Date(today.getTime() - 9 * DAY))}&to=${iso(today)}`)
      .set(auth())
      .expect(200);
    const web = res.body.rows.find((r: { accessTokenId: string }) => r.accessTokenId === webId);
    expect(web).toMatchObject({ tokenName: 'web-app', requests: 42, errors: 2, refusals: 2, cost: 20 });
    expect(web.errorRate).toBeCloseTo(2 / 42, 10);
    const etl = res.body.rows.find((r: { accessTokenId: string }) => r.accessTokenId === etlId);
    expect(etl).toMatchObject({ tokenName: 'etl, nightly', requests: 1, unpricedRequests: 1 });
    const byKey = await request(t.http)
      .get(`/api/admin/usage?groupBy=key&from=${iso(today)}&to=${iso(today)}`)
      .set(auth());
    const keyless = byKey.body.rows.find((r: { keyId: string | null }) => r.keyId === null);
    expect(keyless).toMatchObject({ requests: 2, errors: 2, refusals: 2 });
  });

  it('GET /api/admin/usage answers CSV for Accept: text/csv and format=csv', async () => {
    const range = `from=${iso(new Date(today.getTime() - 9 * DAY))}&to=${iso(today)}`;
    for (const req of [
      request(t.http).get(`/api/admin/usage?groupBy=token&${range}`).set(auth()).set('Accept', 'text/csv'),
      request(t.http).get(`/api/admin/usage?groupBy=token&format=csv&${range}`).set(auth()),
    ]) {
      const res = await req.expect(200);
      expect(res.headers['content-type']).toMatch(/^text\/csv/);
      expect(res.headers['content-disposition']).toMatch(/^attachment; filename="usage-by-token-\d{4}-\d{2}-\d{2}_/);
      const lines = res.text.trim().split('\n');
      expect(lines[0]).toBe(
        'access_token_id,access_token_name,requests,input_tokens,output_tokens,total_tokens,errors,error_rate,cost_usd,refusals,reported_requests,unpriced_requests',
      );
      expect(lines).toContain(`${webId},web-app,42,4000,2000,6000,2,0.0476,20,2,0,0`);
      // A name with a comma is quoted, not split.
      expect(lines.some((l) => l.startsWith(`${etlId},"etl, nightly",1,`))).toBe(true);
      expect(lines[lines.length - 1]).toMatch(/^total,,43,/);
    }
    const json = await request(t.http).get(`/api/admin/usage?${range}`).set(auth()).set('Accept', 'application/json');
    expect(json.headers['content-type']).toMatch(/json/);
  });

  it('refuses bad ranges with 400 problem+json naming the field', async () => {
    for (const [query, field] of [
      ['from=2026-02-30', 'from'],
      ['to=2026-13-01', 'to'],
      ['from=2026-04-31&to=2026-05-01', 'from'],
      ['from=2026-05-02&to=2026-05-01', 'from'],
      ['format=xml', 'format'],
      ['groupBy=token&accessTokenId=nope', 'accessTokenId'],
    ]) {
      const res = await request(t.http).get(`/api/admin/usage?${query}`).set(auth());
      expect(res.status).toBe(400);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(res.body.errors.map((e: { field: string }) => e.field)).toContain(field);
    }
    const trends = await request(t.http).get('/api/admin/usage/trends?groupBy=key').set(auth());
    expect(trends.status).toBe(400);
    expect(trends.headers['content-type']).toMatch(/^application\/problem\+json/);
  });

  it('GET /api/admin/usage/trends: burn rate, projection and the day a budget runs out', async () => {
    const res = await request(t.http).get('/api/admin/usage/trends?groupBy=token').set(auth()).expect(200);
    const web = res.body.groups.find((g: { id: string }) => g.id === webId);
    expect(web.label).toBe('web-app');
    expect(web.series).toHaveLength(30);
    expect(web.projection.burnRatePerDay).toBeCloseTo(2, 8);
    const usd = web.budgets.find((b: { budget: { unit: string } }) => b.budget.unit === 'usd');
    // $5 left at $2 a day: 2.5 days from now, if that is still this month.
    const runsOut = new Date(now.getTime() + 2.5 * DAY);
    const monthEnd = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1));
    expect(usd.projection.exceedsOn).toBe(runsOut < monthEnd ? iso(runsOut) : null);
    const models = await request(t.http).get('/api/admin/usage/trends?groupBy=model').set(auth()).expect(200);
    expect(models.body.groups.map((g: { id: string }) => g.id)).toEqual(
      expect.arrayContaining(['openai/gpt-4o-mini', 'openai/my-fine-tune']),
    );
  });

  it('the access-token usage page shows spend and budgets, whole and for htmx', async () => {
    const page = await owner.page(`/admin/usage/tokens/${webId}`);
    expect(page.headers['cache-control']).toBe('no-store');
    expect(page.headers.vary).toMatch(/HX-Request/);
    expect(page.text).toContain('Usage of web-app');
    expect(page.text).toContain('$25.00 monthly');
    expect(page.text).toContain('$20.00');
    expect(page.text).toContain('1,000 requests daily');
    expect(page.text).toContain('No key: refused by Keyward');
    const fragment = await owner.htmx('get', `/admin/usage/tokens/${webId}`).expect(200);
    expect(fragment.text).toContain('Usage of web-app');
    await owner.page('/admin/usage/tokens/00000000-0000-4000-8000-000000000000', 404);
  });

  it('the usage page follows a custom range (the chart too), flags unpriced models, links CSV', async () => {
    const from = iso(new Date(today.getTime() - 4 * DAY));
    const to = iso(today);
    const page = await owner.page(`/admin/usage?range=custom&from=${from}&to=${to}`);
    expect(page.text.match(/class="chart-bar"/g)).toHaveLength(5);
    expect(page.text).toContain('<option value="custom" selected>');
    expect(page.text).toContain('id="usage-by-token"');
    expect(page.text).toContain(`href="/admin/usage/tokens/${webId}"`);
    expect(page.text).toMatch(/unpriced: 1 requests/);
    const csvLink = /href="(\/admin\/usage\/export\.csv\?[^"]*groupBy&#x3D;token[^"]*)"/.exec(page.text)![1];
    const csv = await owner.agent.get(csvLink.replace(/&amp;/g, '&').replace(/&#x3D;/g, '=')).expect(200);
    expect(csv.headers['content-type']).toMatch(/^text\/csv/);
    expect(csv.text).toContain(`${webId},web-app,22,`);

    // A named range wins over the dates the form also sends.
    const week = await owner.page(`/admin/usage?range=7d&from=${from}&to=${to}`);
    expect(week.text.match(/class="chart-bar"/g)).toHaveLength(7);
    // htmx gets the live part only, with the same range.
    const live = await owner.htmx('get', `/admin/usage?range=custom&from=${from}&to=${to}`).expect(200);
    expect(live.text).not.toContain('<html');
    expect(live.text.match(/class="chart-bar"/g)).toHaveLength(5);
    // Impossible dates: an inline message and a 400.
    const bad = await owner.agent.get('/admin/usage?range=custom&from=2026-02-30&to=2026-03-01');
    expect(bad.status).toBe(400);
    expect(bad.text).toContain('From must be a date that exists');
  });

  it('the dashboard: month-to-date spend, projection, budgets, top spenders, keys to look at, alerts', async () => {
    const page = await owner.page('/admin');
    expect(page.headers['cache-control']).toBe('no-store');
    const monthStart = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
    const daysThisMonth = Math.round((today.getTime() - monthStart.getTime()) / DAY) + 1;
    const mtd = Math.min(10, daysThisMonth) * 2;
    expect(page.text).toContain(`<p class="dash-figure" id="dash-mtd">$${mtd.toFixed(2)}</p>`);
    expect(page.text).toContain('id="dash-key-budget">$100.00</strong>');
    expect(page.text).toContain('id="dash-token-budget">$25.00</strong>');
    const top = page.text.slice(page.text.indexOf('id="dash-top-tokens"'), page.text.indexOf('id="dash-top-models"'));
    expect(top).toContain('web-app');
    expect(page.text).toContain('Main key');
    const attention = page.text.slice(page.text.indexOf('id="dash-attention"'));
    expect(attention).toMatch(/Main key[\s\S]*expiring/);
    expect(page.text).toMatch(/id="dash-open-alerts">0</);
    expect(page.text).toContain('class="sparkline"');
    expect(page.text).toContain('href="/admin/alerts"');
    const login = await request(t.http).get('/login');
    expect(login.headers['cache-control']).toBe('no-store');
  });

  it("the gateway's own 503 (no key for the provider) shows in the report and its error rate", async () => {
    const created = await request(t.http).post('/api/admin/access-tokens').set(auth()).send({ name: 'groq-app' });
    const res = await request(t.http)
      .post('/proxy/groq/openai/v1/chat/completions')
      .set('Authorization', `Bearer ${created.body.token}`)
      .send({ model: 'llama-3.1-8b-instant', messages: [{ role: 'user', content: 'hi' }] });
    expect(res.status).toBe(503);
    await t.app.get(UsageRecorder).flush();
    const report = await request(t.http)
      .get(`/api/admin/usage?groupBy=token&provider=groq&from=${iso(today)}&to=${iso(today)}`)
      .set(auth())
      .expect(200);
    expect(report.body.rows).toEqual([
      expect.objectContaining({ accessTokenId: created.body.id, requests: 1, errors: 1, refusals: 1, errorRate: 1 }),
    ]);
    const monthly = await request(t.http)
      .post('/api/admin/reports')
      .set(auth())
      .send({ from: iso(today), to: iso(today) })
      .expect(201);
    // Today's: the seeded refusal of web-app and this one.
    expect(monthly.body.data.errors).toContainEqual({ errorType: 'no_key', keyless: true, requests: 2 });
  });
});
