import request from 'supertest';
import { AlertEventsService } from '../../src/alerts/alert-events.service';
import { UsageRecorder, type UsageRecord } from '../../src/usage/usage-recorder';
import { generateAnthropicKey, startFakeProvider, type OpenAiFakeProvider } from '../fake-providers';
import { apiToken, ConsoleSession, createUser, startTestApp, type TestApp } from '../support/test-app';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

interface Metric {
  period: string;
  requests: number;
  tokens: number;
  inputTokens: number;
  outputTokens: number;
  cost: number;
  errors: number;
}

interface KeyUsageBody {
  usage: { current: number; limit: number | null; resetAt: string | null; unit: string | null; period: string | null };
  history: { daily: Metric[]; monthly: Metric[] };
  costs: { current: number; projected: number; period: { start: string; end: string }; formula: string; asOf: string };
}

interface ReportBody {
  from: string;
  to: string;
  granularity: string;
  groupBy: string;
  rows: (Omit<Metric, 'period'> & {
    errorRate: number;
    keyId?: string;
    keyName?: string;
    provider?: string;
    model?: string | null;
    day?: string;
  })[];
  totals: Omit<Metric, 'period'> & { errorRate: number };
}

/** What a test record says; the rest of a UsageRecord is filled in by `record`. */
interface Seed {
  key: 'alpha' | 'beta' | 'gamma' | 'delta';
  at: Date;
  model?: string;
  input?: number;
  output?: number;
  cost?: number;
  ok?: boolean;
}

// Expectations are computed here from the seeds, with plain date arithmetic — not with the
// app's own helpers — so that a mistake there cannot hide in both.
const utcMidnight = (d: Date) => new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
const dayOf = (d: Date) => d.toISOString().slice(0, 10);
const monthOf = (d: Date) => d.toISOString().slice(0, 7);
const count = (n: number) => n.toLocaleString('en-US');
/** A URL as Handlebars writes it into an attribute (`{{ }}` escapes `=` and `&`). */
const attr = (url: string) => url.replace(/&/g, '&amp;').replace(/=/g, '&#x3D;');

describe('Usage: per-key usage and costs, reports, console', () => {
  let t: TestApp;
  let openai: OpenAiFakeProvider;
  let token: string;
  const tokens: Record<string, string> = {};
  const keys: Record<Seed['key'], string> = { alpha: '', beta: '', gamma: '', delta: '' };
  const seeds: Seed[] = [];
  const now = new Date();
  const today = utcMidnight(now);
  const daysAgo = (days: number, hours = 12) => new Date(today.getTime() - days * DAY + hours * HOUR);
  /** Monday of this ISO week and the first of this month, 00:00 UTC. */
  const weekStart = new Date(today.getTime() - ((today.getUTCDay() + 6) % 7) * DAY);
  const monthStart = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), 1));
  const nextMonthStart = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth() + 1, 1));
  const elevenMonthsBack = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth() - 11, 1));

  const auth = (role = 'owner') => ({ Authorization: `Bearer ${role === 'owner' ? token : tokens[role]}` });
  const get = (url: string, role = 'owner') => request(t.http).get(url).set(auth(role));

  async function addKey(body: Record<string, unknown>): Promise<string> {
    const res = await request(t.http).post('/api/admin/api-keys').set(auth()).send(body);
    if (res.status !== 201) throw new Error(`create answered ${res.status}: ${JSON.stringify(res.body)}`);
    return (res.body as { id: string }).id;
  }

  function record(seed: Seed): UsageRecord {
    const ok = seed.ok ?? true;
    const input = ok ? (seed.input ?? 100) : 0;
    const output = ok ? (seed.output ?? 50) : 0;
    return {
      timestamp: seed.at,
      keyId: keys[seed.key],
      provider: seed.key === 'delta' ? 'anthropic' : 'openai',
      accessTokenId: null,
      endpoint: seed.key === 'delta' ? '/v1/messages' : '/v1/chat/completions',
      model: seed.model ?? (seed.key === 'delta' ? 'claude-sonnet-4' : 'gpt-4o-mini'),
      inputTokens: input,
      outputTokens: output,
      cachedInputTokens: 0,
      totalTokens: input + output,
      cost: ok ? (seed.cost ?? 0.25) : 0,
      unpriced: false,
      latencyMs: 100,
      success: ok,
      errorType: ok ? null : 'rate_limited',
      status: ok ? 200 : 429,
      attempt: 1,
      stream: false,
      source: 'gateway',
    };
  }

  const seedsOf = (key: Seed['key']) => seeds.filter((s) => s.key === key).map(record);
  const total = (records: UsageRecord[]) => ({
    requests: records.length,
    tokens: records.reduce((a, r) => a + r.totalTokens, 0),
    inputTokens: records.reduce((a, r) => a + r.inputTokens, 0),
    outputTokens: records.reduce((a, r) => a + r.outputTokens, 0),
    cost: records.reduce((a, r) => a + r.cost, 0),
    errors: records.filter((r) => !r.success).length,
  });
  const between = (records: UsageRecord[], from: Date, to: Date) =>
    records.filter((r) => r.timestamp >= from && r.timestamp < to);

  function expectMetric(actual: Omit<Metric, 'period'>, expected: ReturnType<typeof total>) {
    expect({ ...actual, cost: Math.round(actual.cost * 1e6) }).toMatchObject({
      requests: expected.requests,
      tokens: expected.tokens,
      inputTokens: expected.inputTokens,
      outputTokens: expected.outputTokens,
      cost: Math.round(expected.cost * 1e6),
      errors: expected.errors,
    });
  }

  beforeAll(async () => {
    openai = await startFakeProvider('openai');
    process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL = openai.baseUrl;
    t = await startTestApp();
    token = await apiToken(t.http);
    for (const role of ['admin', 'operator', 'auditor']) {
      const user = await createUser(t.http, token, role);
      tokens[role] = await apiToken(t.http, user.email, user.password);
      tokens[`${role}:email`] = user.email;
      tokens[`${role}:password`] = user.password;
    }

    keys.alpha = await addKey({ provider: 'openai', name: 'Alpha <prod>', key: openai.generateKey() });
    keys.beta = await addKey({ provider: 'openai', name: 'Beta', key: openai.generateKey() });
    keys.gamma = await addKey({ provider: 'openai', name: 'Gamma', key: openai.generateKey() });
    keys.delta = await addKey({ provider: 'anthropic', name: 'Delta', key: generateAnthropicKey() });
    // Limits first: a new unit or period restarts the count, which would forget the seeds.
    await request(t.http)
      .put(`/api/admin/api-keys/${keys.alpha}/limits`)
      .set(auth())
      .send({ value: 1_000_000, unit: 'tokens', period: 'weekly' })
      .expect(200);
    await request(t.http)
      .put(`/api/admin/api-keys/${keys.beta}/limits`)
      .set(auth())
      .send({ value: 500, unit: 'requests', period: 'monthly' })
      .expect(200);

    seeds.push(
      // Alpha: today, this week's first instant and the one before it, the 30-day edges,
      // older months, the 12-month edges and beyond.
      { key: 'alpha', at: today, input: 1000, output: 500, cost: 1.5 },
      { key: 'alpha', at: today, ok: false },
      { key: 'alpha', at: weekStart, input: 200, output: 100, cost: 0.375 },
      { key: 'alpha', at: new Date(weekStart.getTime() - 1000), input: 300, output: 30, cost: 0.125 },
      { key: 'alpha', at: daysAgo(1), model: 'gpt-4o', input: 2000, output: 700, cost: 4.25 },
      { key: 'alpha', at: daysAgo(1), model: 'gpt-4o', ok: false },
      { key: 'alpha', at: daysAgo(3), cost: 0.0625 },
      { key: 'alpha', at: daysAgo(29, 0), input: 10, output: 5, cost: 0.03125 },
      { key: 'alpha', at: new Date(today.getTime() - 29 * DAY - 1000), input: 20, output: 5, cost: 0.5 },
      { key: 'alpha', at: daysAgo(45), input: 400, output: 100, cost: 2 },
      { key: 'alpha', at: daysAgo(75), ok: false },
      { key: 'alpha', at: daysAgo(200), input: 5000, output: 5000, cost: 10 },
      { key: 'alpha', at: elevenMonthsBack, input: 7, output: 3, cost: 0.75 },
      { key: 'alpha', at: new Date(elevenMonthsBack.getTime() - 1000), input: 9, output: 1, cost: 8 },
      { key: 'alpha', at: daysAgo(420), input: 1, output: 1, cost: 100 },
      // Beta: the month's first instant and the one before it, successes and failures.
      { key: 'beta', at: monthStart, cost: 0.5 },
      { key: 'beta', at: new Date(monthStart.getTime() - 1000), cost: 3 },
      { key: 'beta', at: today, cost: 0.125 },
      { key: 'beta', at: today, ok: false },
      { key: 'beta', at: daysAgo(2), cost: 0.25 },
      // Gamma (no limit) and Delta (another provider).
      { key: 'gamma', at: today, cost: 2 },
      { key: 'gamma', at: daysAgo(10), cost: 1 },
      { key: 'delta', at: today, input: 400, output: 400, cost: 0.6 },
      { key: 'delta', at: daysAgo(5), ok: false },
    );
    const recorder = t.app.get(UsageRecorder);
    for (const seed of seeds) recorder.record(record(seed));
    await recorder.flush();
  });

  afterAll(async () => {
    await t.close();
    await openai.close();
    delete process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL;
  });

  describe('GET /api/admin/api-keys/:id/usage', () => {
    it('answers the last 30 days, oldest first, every day present, zeros where none', async () => {
      const res = await get(`/api/admin/api-keys/${keys.alpha}/usage`).expect(200);
      const body = res.body as KeyUsageBody;
      const alpha = seedsOf('alpha');
      expect(body.history.daily).toHaveLength(30);
      const first = new Date(today.getTime() - 29 * DAY);
      for (let i = 0; i < 30; i++) {
        const day = new Date(first.getTime() + i * DAY);
        const metric = body.history.daily[i];
        expect(metric.period).toBe(dayOf(day));
        expectMetric(metric, total(between(alpha, day, new Date(day.getTime() + DAY))));
      }
      // The 30-day window starts at midnight 29 days ago: one second earlier is not in it.
      expect(body.history.daily[0]).toMatchObject({ period: dayOf(first), requests: 1, tokens: 15, cost: 0.03125 });
      const empty = body.history.daily.find((d) => d.period === dayOf(new Date(today.getTime() - 20 * DAY)))!;
      expect(empty).toEqual({
        period: dayOf(new Date(today.getTime() - 20 * DAY)),
        requests: 0,
        tokens: 0,
        inputTokens: 0,
        outputTokens: 0,
        cost: 0,
        errors: 0,
      });
      const todays = body.history.daily[29];
      expect(todays.period).toBe(dayOf(now));
      expect(todays.errors).toBeGreaterThanOrEqual(1);
    });

    it('answers the last 12 months including this one, summed from the daily rollups', async () => {
      const body = (await get(`/api/admin/api-keys/${keys.alpha}/usage`).expect(200)).body as KeyUsageBody;
      const alpha = seedsOf('alpha');
      expect(body.history.monthly).toHaveLength(12);
      for (let i = 0; i < 12; i++) {
        const start = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth() - 11 + i, 1));
        const end = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth() - 10 + i, 1));
        expect(body.history.monthly[i].period).toBe(monthOf(start));
        expectMetric(body.history.monthly[i], total(between(alpha, start, end)));
      }
      // The 12 months start on the 1st eleven months back: the second before it and 420 days ago are out.
      const inYear = between(alpha, elevenMonthsBack, nextMonthStart);
      const sum = body.history.monthly.reduce((a, m) => a + m.cost, 0);
      expect(sum).toBeCloseTo(total(inYear).cost, 6);
      expect(sum).toBeLessThan(total(alpha).cost - 100);
      expect(body.history.monthly[0]).toMatchObject({ period: monthOf(elevenMonthsBack) });
      expect(body.history.monthly[0].cost).toBeGreaterThanOrEqual(0.75);
    });

    it("counts usage in the limit's unit and costs over its period, projected at the current pace", async () => {
      const before = Date.now();
      const body = (await get(`/api/admin/api-keys/${keys.alpha}/usage`).expect(200)).body as KeyUsageBody;
      const after = Date.now();
      const alpha = seedsOf('alpha');

      // Tokens of every recorded request count against the limit, whatever their timestamp.
      expect(body.usage).toEqual({
        current: total(alpha).tokens,
        limit: 1_000_000,
        resetAt: new Date(weekStart.getTime() + 7 * DAY).toISOString(),
        unit: 'tokens',
        period: 'weekly',
      });

      const weekEnd = new Date(weekStart.getTime() + 7 * DAY);
      expect(body.costs.period).toEqual({ start: weekStart.toISOString(), end: weekEnd.toISOString() });
      const spent = total(between(alpha, weekStart, weekEnd)).cost;
      expect(body.costs.current).toBeCloseTo(spent, 8);
      // The second before Monday 00:00 is last week's.
      expect(body.costs.current).toBeGreaterThanOrEqual(1.5 + 0.375);

      const asOf = new Date(body.costs.asOf).getTime();
      expect(asOf).toBeGreaterThanOrEqual(before);
      expect(asOf).toBeLessThanOrEqual(after);
      const length = 7 * DAY;
      const elapsed = Math.min(length, Math.max(asOf - weekStart.getTime(), HOUR));
      expect(body.costs.projected).toBeCloseTo((spent / elapsed) * length, 6);
      expect(body.costs.projected).toBeGreaterThanOrEqual(spent);
      expect(body.costs.formula).toMatch(/current \/ elapsed × length/);
      expect(body.costs.formula).toMatch(/at least 1 hour/);
    });

    it('counts successful requests for a requests limit; costs over the calendar month', async () => {
      const body = (await get(`/api/admin/api-keys/${keys.beta}/usage`).expect(200)).body as KeyUsageBody;
      const beta = seedsOf('beta');
      expect(body.usage).toMatchObject({
        current: beta.filter((r) => r.success).length,
        limit: 500,
        unit: 'requests',
        period: 'monthly',
        resetAt: nextMonthStart.toISOString(),
      });
      expect(body.costs.period).toEqual({ start: monthStart.toISOString(), end: nextMonthStart.toISOString() });
      expect(body.costs.current).toBeCloseTo(0.5 + 0.125 + (daysAgo(2) >= monthStart ? 0.25 : 0), 8);
      const elapsed = Math.max(new Date(body.costs.asOf).getTime() - monthStart.getTime(), HOUR);
      const length = nextMonthStart.getTime() - monthStart.getTime();
      expect(body.costs.projected).toBeCloseTo((body.costs.current / elapsed) * length, 6);
    });

    it('shows no counter for a key without a limit, and tracks its costs over the calendar month', async () => {
      const body = (await get(`/api/admin/api-keys/${keys.gamma}/usage`).expect(200)).body as KeyUsageBody;
      expect(body.usage).toEqual({ current: 0, limit: null, resetAt: null, unit: null, period: null });
      expect(body.costs.period).toEqual({ start: monthStart.toISOString(), end: nextMonthStart.toISOString() });
      const spent = total(between(seedsOf('gamma'), monthStart, nextMonthStart)).cost;
      expect(body.costs.current).toBeCloseTo(spent, 8);
      expect(body.history.daily.reduce((a, d) => a + d.requests, 0)).toBe(2);
    });

    it('answers every role that may read usage, 401 without a token, 404 and 400 for bad ids', async () => {
      // Every role holds read:Usage (auditors read everything), so no role gets a 403 here.
      for (const role of ['admin', 'operator', 'auditor']) {
        const res = await get(`/api/admin/api-keys/${keys.beta}/usage`, role);
        expect(res.status).toBe(200);
        expect((res.body as KeyUsageBody).history.daily).toHaveLength(30);
      }
      const anonymous = await request(t.http).get(`/api/admin/api-keys/${keys.beta}/usage`);
      expect(anonymous.status).toBe(401);
      expect(anonymous.headers['content-type']).toMatch(/application\/problem\+json/);
      expect(anonymous.body).not.toHaveProperty('history');

      const missing = await get('/api/admin/api-keys/00000000-0000-4000-8000-000000000000/usage');
      expect(missing.status).toBe(404);
      expect(missing.body).toMatchObject({ status: 404, title: 'API key not found' });

      const malformed = await get('/api/admin/api-keys/not-a-uuid/usage');
      expect(malformed.status).toBe(400);
      expect(malformed.headers['content-type']).toMatch(/application\/problem\+json/);
    });
  });

  describe('GET /api/admin/usage (reports)', () => {
    const last30 = () => {
      const from = new Date(today.getTime() - 29 * DAY);
      return { from, to: new Date(today.getTime() + DAY) };
    };

    it('defaults to the last 30 days grouped by key, with totals and error rates', async () => {
      const body = (await get('/api/admin/usage').expect(200)).body as ReportBody;
      const { from, to } = last30();
      expect(body).toMatchObject({
        from: from.toISOString(),
        to: to.toISOString(),
        groupBy: 'key',
        granularity: 'day',
      });
      const all = seeds.map(record);
      for (const name of ['alpha', 'beta', 'gamma', 'delta'] as const) {
        const row = body.rows.find((r) => r.keyId === keys[name])!;
        const expected = total(between(seedsOf(name), from, to));
        expectMetric(row, expected);
        expect(row.errorRate).toBeCloseTo(expected.errors / expected.requests, 10);
      }
      expect(body.rows.find((r) => r.keyId === keys.alpha)).toMatchObject({
        keyName: 'Alpha <prod>',
        provider: 'openai',
      });
      const expectedTotals = total(between(all, from, to));
      expectMetric(body.totals, expectedTotals);
      expect(body.totals.errorRate).toBeCloseTo(expectedTotals.errors / expectedTotals.requests, 10);
    });

    it('groups by provider, by model and by day (every day present)', async () => {
      const { from, to } = last30();
      const all = between(seeds.map(record), from, to);

      const byProvider = (await get('/api/admin/usage?groupBy=provider').expect(200)).body as ReportBody;
      expect(byProvider.rows.map((r) => r.provider).sort()).toEqual(['anthropic', 'openai']);
      expectMetric(
        byProvider.rows.find((r) => r.provider === 'anthropic')!,
        total(all.filter((r) => r.provider === 'anthropic')),
      );

      const byModel = (await get('/api/admin/usage?groupBy=model').expect(200)).body as ReportBody;
      const gpt4o = byModel.rows.find((r) => r.model === 'gpt-4o')!;
      expectMetric(gpt4o, total(all.filter((r) => r.model === 'gpt-4o')));
      expect(gpt4o.errorRate).toBe(0.5);

      const byDay = (await get('/api/admin/usage?groupBy=day').expect(200)).body as ReportBody;
      expect(byDay.rows).toHaveLength(30);
      expect(byDay.rows[29].day).toBe(dayOf(now));
      expectMetric(byDay.rows[29], total(between(all, today, to)));
      expect(byDay.rows.filter((r) => r.requests === 0).length).toBeGreaterThan(20);
      expectMetric(byDay.totals, total(all));
    });

    it('filters by provider, key and an explicit window (a bare end date includes that day)', async () => {
      const all = seeds.map(record);
      const anthropic = (await get('/api/admin/usage?provider=anthropic&groupBy=key').expect(200)).body as ReportBody;
      expect(anthropic.rows.map((r) => r.keyId)).toEqual([keys.delta]);

      const from = dayOf(new Date(today.getTime() - 100 * DAY));
      const to = dayOf(new Date(today.getTime() - 1 * DAY));
      const window = (await get(`/api/admin/usage?keyId=${keys.alpha}&from=${from}&to=${to}&groupBy=model`).expect(200))
        .body as ReportBody;
      const start = new Date(`${from}T00:00:00Z`);
      expect(window).toMatchObject({ from: start.toISOString(), to: today.toISOString() });
      expectMetric(window.totals, total(between(seedsOf('alpha'), start, today)));
      expect(window.rows.map((r) => r.model).sort()).toEqual(['gpt-4o', 'gpt-4o-mini']);

      // Whole days given as date-times read the daily rollups; anything else the hourly ones,
      // widened to whole hours.
      const iso = (d: Date) => encodeURIComponent(d.toISOString());
      const tomorrow = new Date(today.getTime() + DAY);
      const daily = (await get(`/api/admin/usage?from=${iso(today)}&to=${iso(tomorrow)}`).expect(200))
        .body as ReportBody;
      expect(daily.granularity).toBe('day');
      expectMetric(daily.totals, total(between(all, today, tomorrow)));
      const partialFrom = new Date(today.getTime() - 30 * 60_000);
      const partialTo = new Date(today.getTime() + 30 * 60_000);
      const hourly = (await get(`/api/admin/usage?from=${iso(partialFrom)}&to=${iso(partialTo)}`).expect(200))
        .body as ReportBody;
      expect(hourly).toMatchObject({
        granularity: 'hour',
        from: new Date(today.getTime() - HOUR).toISOString(),
        to: new Date(today.getTime() + HOUR).toISOString(),
      });
      expectMetric(
        hourly.totals,
        total(between(all, new Date(today.getTime() - HOUR), new Date(today.getTime() + HOUR))),
      );
    });

    it('refuses malformed filters with a 400 naming the field, and callers without a token', async () => {
      const cases: [string, string, RegExp][] = [
        ['groupBy=week', 'groupBy', /groupBy must be one of key, provider, model, token, day/],
        ['from=2026-02-30', 'from', /from must be a date/],
        ['from=yesterday', 'from', /from must be a date/],
        ['from=2026-05-02&to=2026-05-01', 'from', /from must be before to/],
        ['from=2020-01-01&to=2026-01-01', 'to', /at most 400 days/],
        ['keyId=123', 'keyId', /keyId must be a UUID/],
        ['sort=cost', 'sort', /should not exist/],
      ];
      for (const [query, field, message] of cases) {
        const res = await get(`/api/admin/usage?${query}`);
        expect(res.status).toBe(400);
        const errors = (res.body as { errors: { field: string; messages: string[] }[] }).errors;
        expect(errors.find((e) => e.field === field)?.messages.join(' ')).toMatch(message);
      }
      expect((await get('/api/admin/usage', 'auditor')).status).toBe(200);
      expect((await request(t.http).get('/api/admin/usage')).status).toBe(401);
    });
  });

  describe('console: /admin/usage', () => {
    let owner: ConsoleSession;

    beforeAll(async () => {
      await t.app.get(AlertEventsService).raise({
        kind: 'key.quota-exhausted',
        severity: 'critical',
        keyId: keys.beta,
        message: 'Beta is out of credit <b>now</b>',
      });
      owner = new ConsoleSession(t.http);
      await owner.signIn();
    });

    it('renders UsageMetrics, CostTracking, the 30-day chart and recent alerts; polls every 5 s', async () => {
      const res = await owner.page('/admin/usage');
      expect(res.headers.vary).toMatch(/HX-Request/);
      const html = res.text;
      expect(html).toMatch(/^<!doctype html>/i);
      expect(html).toContain('<a href="/admin/usage" aria-current="page">Usage</a>');
      expect(html).toContain(`hx-get="${attr('/admin/usage/live?range=month')}" hx-trigger="every 5s"`);
      expect(html).toMatch(/<form method="get" action="\/admin\/usage"/);

      // This month, per key: the alpha row holds alpha's numbers, its name escaped.
      const alphaMonth = total(between(seedsOf('alpha'), monthStart, nextMonthStart));
      const alphaRow = html.slice(
        html.indexOf(`id="usage-key-${keys.alpha}"`),
        html.indexOf('</tr>', html.indexOf(`id="usage-key-${keys.alpha}"`)),
      );
      expect(alphaRow).toContain('Alpha &lt;prod&gt;');
      expect(alphaRow).toContain(`<td class="num">${count(alphaMonth.requests)}</td>`);
      expect(alphaRow).toContain(`<td class="num">${count(alphaMonth.tokens)}</td>`);
      expect(html).toContain('id="usage-provider-anthropic"');

      // Cost tracking per key (each over its own period) and per model.
      const costRow = html.slice(
        html.indexOf(`id="cost-key-${keys.gamma}"`),
        html.indexOf('</tr>', html.indexOf(`id="cost-key-${keys.gamma}"`)),
      );
      const gammaMonth = total(between(seedsOf('gamma'), monthStart, nextMonthStart)).cost;
      expect(costRow).toContain(`<td class="num">$${gammaMonth.toFixed(2)}</td>`);
      expect(costRow).toContain('this month');
      expect(html).toContain('id="costs-by-model"');
      expect(html).toContain('<code>claude-sonnet-4</code>');

      // The chart: one bar per day of the range (this month by default), accessible, no inline
      // style anywhere on the page.
      const svg = html.slice(html.indexOf('<svg'), html.indexOf('</svg>') + 6);
      const daysThisMonth = Math.round((nextMonthStart.getTime() - monthStart.getTime()) / DAY);
      expect(svg.match(/class="chart-bar"/g)).toHaveLength(daysThisMonth);
      expect(svg).toContain('role="img" aria-labelledby="usage-chart-title usage-chart-desc"');
      expect(svg).toContain(`<title>${dayOf(now)}:`);
      expect(html).not.toMatch(/style=/);
      expect(html).not.toMatch(/<script(?![^>]*src=)/);

      // Alerts, escaped.
      expect(html).toContain('Beta is out of credit &lt;b&gt;now&lt;/b&gt;');
      expect(html).toContain('key.quota-exhausted');
    });

    it('answers htmx (the poll and the filter form) with just the live part', async () => {
      const daysThisMonth = Math.round((nextMonthStart.getTime() - monthStart.getTime()) / DAY);
      for (const [url, bars] of [
        ['/admin/usage/live?range=month', daysThisMonth],
        ['/admin/usage?range=7d&provider=anthropic', 7],
      ] as const) {
        const res = await owner.htmx('get', url);
        expect(res.status).toBe(200);
        expect(res.headers.vary).toMatch(/HX-Request/);
        expect(res.text).not.toMatch(/<html|aria-label="Main"/i);
        expect(res.text.trimStart()).toMatch(/^(\{\{!--.*--\}\}\s*)?<div id="usage-live"/s);
        // Only the day chart has bars (the trend sparklines have none).
        expect(res.text.match(/class="chart-bar"/g)).toHaveLength(bars);
      }
      const filtered = await owner.htmx('get', '/admin/usage?range=7d&provider=anthropic');
      expect(filtered.text).toContain(`hx-get="${attr('/admin/usage/live?range=7d&provider=anthropic')}"`);
      expect(filtered.text).toContain(`id="usage-key-${keys.delta}"`);
      expect(filtered.text).not.toContain(`id="usage-key-${keys.alpha}"`);
    });

    it('filters without JavaScript: today only, and refuses an unknown range with a 400', async () => {
      const res = await owner.page('/admin/usage?range=today');
      expect(res.text).toMatch(/<option value="today" selected>/);
      const todays = total(between(seeds.map(record), today, new Date(today.getTime() + DAY)));
      expect(res.text).toContain(`<div><dt>Requests</dt><dd>${count(todays.requests)}</dd></div>`);
      expect(res.text).toContain(`<div><dt>Errors</dt><dd class="status-bad">${count(todays.errors)}</dd></div>`);

      const bad = await owner.agent.get('/admin/usage?range=forever');
      expect(bad.status).toBe(400);
      expect(bad.text).toContain('range must be one of today, 7d, 30d, month');
    });

    it('shows the page to auditors and sends a visitor without a session to sign in', async () => {
      const auditor = new ConsoleSession(t.http);
      await auditor.signIn(tokens['auditor:email'], tokens['auditor:password']);
      const res = await auditor.page('/admin/usage');
      expect(res.text).toContain('id="usage-metrics"');
      expect(res.text).toContain('id="usage-alerts"');

      const anonymous = await request(t.http).get('/admin/usage').redirects(0);
      expect(anonymous.status).toBe(303);
      expect(anonymous.headers.location).toBe('/login?next=%2Fadmin%2Fusage');
    });

    it("renders a key's usage section: against its limit, 30 days, costs now and projected", async () => {
      const page = await owner.page(`/admin/usage/keys/${keys.beta}`);
      expect(page.headers.vary).toMatch(/HX-Request/);
      expect(page.text).toMatch(/^<!doctype html>/i);
      const successes = seedsOf('beta').filter((r) => r.success).length;
      expect(page.text).toContain(`${successes} / 500 requests monthly`);
      expect(page.text).toMatch(new RegExp(`<meter min="0" max="500"[^>]* value="${successes}">`));

      const api = (await get(`/api/admin/api-keys/${keys.beta}/usage`).expect(200)).body as KeyUsageBody;
      const fragment = await owner.htmx('get', `/admin/usage/keys/${keys.beta}`);
      expect(fragment.status).toBe(200);
      expect(fragment.text).not.toMatch(/<html/i);
      expect(fragment.text.trimStart()).toMatch(/^<section class="card key-usage" id="key-usage"/);
      expect(fragment.text).toContain(`<strong>$${api.costs.current.toFixed(2)}</strong> so far`);
      expect(fragment.text.match(/class="chart-bar"/g)).toHaveLength(30);

      expect((await owner.agent.get('/admin/usage/keys/00000000-0000-4000-8000-000000000000')).status).toBe(404);
      expect((await owner.agent.get('/admin/usage/keys/nope')).status).toBe(400);
    });
  });
});
