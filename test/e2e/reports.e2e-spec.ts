import { EventEmitter2 } from '@nestjs/event-emitter';
import request from 'supertest';
import { REPORT_GENERATED, type ReportGeneratedEvent } from '../../src/reports/reports.service';
import { ReportsScheduler } from '../../src/reports/reports.scheduler';
import { UsageRecorder, type UsageRecord } from '../../src/usage/usage-recorder';
import { generateAnthropicKey, startFakeProvider, type OpenAiFakeProvider } from '../fake-providers';
import { apiToken, ConsoleSession, createUser, startTestApp, type TestApp } from '../support/test-app';

// Starting the app (and a browser) takes a while on a loaded machine; Jest's default is 5 s.
jest.setTimeout(60_000);

const DAY = 24 * 3_600_000;

interface Row {
  id: string;
  label: string;
  provider: string | null;
  requests: number;
  inputTokens: number;
  outputTokens: number;
  tokens: number;
  errors: number;
  errorRate: number;
  cost: number;
  reportedRequests: number;
  reportedCost: number;
  refusals: number;
  unpricedRequests: number;
  previous: { requests: number; cost: number } | null;
  change: { requests: number | null; cost: number | null };
}

interface Report {
  id: string;
  kind: string;
  periodStart: string;
  periodEnd: string;
  data: {
    totals: Omit<Row, 'id' | 'label' | 'provider' | 'previous' | 'change'>;
    byProvider: Row[];
    byKey: Row[];
    byModel: Row[];
    byToken: Row[];
    errors: { errorType: string; keyless: boolean; requests: number }[];
    daily: { period: string; requests: number; cost: number }[];
    topSpenders: { keys: Row[]; tokens: Row[]; models: Row[] };
  };
}

/** Whole units of 1e-8 USD, the precision costs are stored with. */
const units = (usd: number) => Math.round(usd * 1e8);

/**
 * Reports against the raw events: usage is recorded through the real UsageRecorder (events and
 * rollups), the report reads only the rollups, and this test recomputes every figure from
 * `usage_events` with its own SQL, so a mistake in the rollups or the report shows as a mismatch.
 */
describe('Usage reports', () => {
  let t: TestApp;
  let openai: OpenAiFakeProvider;
  let token: string;
  let auditorToken: string;
  const keys: Record<string, string> = {};
  const accessTokens: Record<string, string> = {};
  const now = new Date();
  const thisMonth = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
  const lastMonth = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 1));
  const monthBefore = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 2, 1));
  const lastDay = new Date(thisMonth.getTime() - DAY);
  const iso = (d: Date) => d.toISOString().slice(0, 10);
  const auth = (bearer = token) => ({ Authorization: `Bearer ${bearer}` });
  const generated: ReportGeneratedEvent[] = [];

  function rec(r: Partial<UsageRecord> & Pick<UsageRecord, 'timestamp' | 'provider'>): UsageRecord {
    const input = r.inputTokens ?? 0;
    const output = r.outputTokens ?? 0;
    return {
      keyId: null,
      accessTokenId: null,
      endpoint: '/v1/chat/completions',
      model: 'gpt-4o-mini',
      inputTokens: input,
      outputTokens: output,
      cachedInputTokens: 0,
      totalTokens: input + output,
      cost: 0,
      unpriced: false,
      latencyMs: 120,
      success: true,
      errorType: null,
      status: 200,
      attempt: 1,
      stream: false,
      source: 'gateway',
      ...r,
    };
  }

  beforeAll(async () => {
    openai = await startFakeProvider('openai');
    process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL = openai.baseUrl;
    t = await startTestApp({ KEYWARD_REPORTS: 'false' });
    token = await apiToken(t.http);
    const auditor = await createUser(t.http, token, 'auditor');
    auditorToken = await apiToken(t.http, auditor.email, auditor.password);
    t.app.get(EventEmitter2).on(REPORT_GENERATED, (e: ReportGeneratedEvent) => generated.push(e));

    for (const [name, provider, key] of [
      ['Prod', 'openai', openai.generateKey()],
      ['Batch', 'openai', openai.generateKey()],
      ['Claude', 'anthropic', generateAnthropicKey()],
    ]) {
      const res = await request(t.http)
        .post('/api/admin/api-keys')
        .set(auth())
        .send({ provider, name, key })
        .expect(201);
      keys[name] = (res.body as { id: string }).id;
    }
    for (const name of ['web-app', 'etl-job']) {
      const res = await request(t.http).post('/api/admin/access-tokens').set(auth()).send({ name }).expect(201);
      accessTokens[name] = (res.body as { id: string }).id;
    }

    // Usage spread over the month before last (the comparison), last month (the report) and this
    // month (outside it), with awkward costs, failures, reported usage, unpriced models and
    // Keyward's own refusals (no key: 503 no_key, 429 usage_exceeded and rate_limited).
    const records: UsageRecord[] = [];
    let n = 0;
    const at = (month: Date, day: number, hour: number) => new Date(month.getTime() + day * DAY + hour * 3_600_000);
    for (const [month, count] of [
      [monthBefore, 12],
      [lastMonth, 40],
      [thisMonth, 6],
    ] as const) {
      for (let i = 0; i < count; i++) {
        n++;
        const day = i % 27;
        const keyName = ['Prod', 'Batch', 'Claude'][i % 3];
        const provider = keyName === 'Claude' ? 'anthropic' : 'openai';
        const tokenId = i % 4 === 3 ? accessTokens['etl-job'] : accessTokens['web-app'];
        const ok = i % 7 !== 5;
        records.push(
          rec({
            timestamp: at(month, day, (i * 5) % 24),
            keyId: keys[keyName],
            provider,
            accessTokenId: tokenId,
            model: provider === 'anthropic' ? 'claude-sonnet-4' : i % 2 ? 'gpt-4o' : 'gpt-4o-mini',
            inputTokens: ok ? 100 + n * 7 : 0,
            outputTokens: ok ? 30 + n * 3 : 0,
            cost: ok ? 0.000012345 * n + 0.1 / 3 : 0,
            success: ok,
            errorType: ok ? null : 'provider_error',
            status: ok ? 200 : 500,
            endpoint: provider === 'anthropic' ? '/v1/messages' : '/v1/chat/completions',
          }),
        );
      }
    }
    // Reported by an application, and an unpriced model.
    records.push(
      rec({
        timestamp: at(lastMonth, 3, 9),
        keyId: keys.Prod,
        provider: 'openai',
        accessTokenId: accessTokens['etl-job'],
        inputTokens: 1000,
        outputTokens: 10,
        cost: 0.0123456789,
        source: 'reported',
      }),
      rec({
        timestamp: at(lastMonth, 4, 9),
        keyId: keys.Batch,
        provider: 'openai',
        accessTokenId: accessTokens['web-app'],
        model: 'my-fine-tune',
        inputTokens: 50,
        outputTokens: 50,
        cost: 0,
        unpriced: true,
      }),
    );
    // Keyward's own answers: no key was used.
    for (const [errorType, day] of [
      ['no_key', 2],
      ['no_key', 2],
      ['usage_exceeded', 9],
      ['rate_limited', 9],
      ['rate_limited', 20],
    ] as const) {
      records.push(
        rec({
          timestamp: at(lastMonth, day, 13),
          provider: 'openai',
          accessTokenId: accessTokens['web-app'],
          success: false,
          errorType,
          status: null,
          attempt: 0,
        }),
      );
    }
    const recorder = t.app.get(UsageRecorder);
    // In two batches, so rollup rows are added to, not only inserted.
    records.slice(0, 30).forEach((r) => recorder.record(r));
    await recorder.flush();
    records.slice(30).forEach((r) => recorder.record(r));
    await recorder.flush();
  });

  afterAll(async () => {
    await t?.close();
    await openai?.close();
    delete process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL;
  });

  /** The figures of one group, recomputed from the raw events of a window. */
  async function fromEvents(groupBy: string, start: Date, end: Date) {
    return t.dataSource.query<
      {
        id: string;
        requests: number;
        inputTokens: number;
        outputTokens: number;
        tokens: number;
        errors: number;
        cost: number;
        reportedRequests: number;
        refusals: number;
        unpricedRequests: number;
      }[]
    >(
      `SELECT ${groupBy} AS id, count(*)::int AS requests, sum(input_tokens)::int AS "inputTokens",
              sum(output_tokens)::int AS "outputTokens", sum(total_tokens)::int AS tokens,
              count(*) FILTER (WHERE NOT success)::int AS errors, sum(cost)::float8 AS cost,
              count(*) FILTER (WHERE source = 'reported')::int AS "reportedRequests",
              count(*) FILTER (WHERE key_id IS NULL)::int AS refusals,
              count(*) FILTER (WHERE unpriced)::int AS "unpricedRequests"
         FROM usage_events WHERE "timestamp" >= $1 AND "timestamp" < $2
        GROUP BY 1 ORDER BY 1`,
      [start, end],
    );
  }

  const comparable = (r: Omit<Row, 'label' | 'provider' | 'previous' | 'change' | 'errorRate' | 'reportedCost'>) => ({
    id: r.id,
    requests: r.requests,
    inputTokens: r.inputTokens,
    outputTokens: r.outputTokens,
    tokens: r.tokens,
    errors: r.errors,
    cost: units(r.cost),
    reportedRequests: r.reportedRequests,
    refusals: r.refusals,
    unpricedRequests: r.unpricedRequests,
  });
  const sortById = <T extends { id: string }>(rows: T[]) => [...rows].sort((a, b) => (a.id < b.id ? -1 : 1));

  let monthly: Report;

  it('makes a monthly report on demand that matches the raw events exactly', async () => {
    const res = await request(t.http)
      .post('/api/admin/reports')
      .set(auth())
      .send({ from: iso(lastMonth), to: iso(lastDay) })
      .expect(201);
    monthly = res.body as Report;
    expect(monthly.kind).toBe('monthly');
    expect(new Date(monthly.periodStart).getTime()).toBe(lastMonth.getTime());
    expect(new Date(monthly.periodEnd).getTime()).toBe(thisMonth.getTime());

    const checks: [Row[], string][] = [
      [monthly.data.byProvider, 'provider'],
      [monthly.data.byKey, `coalesce(key_id::text, 'none:' || provider)`],
      [monthly.data.byModel, `provider || '/' || coalesce(model, '')`],
      [monthly.data.byToken, `coalesce(access_token_id::text, 'none')`],
    ];
    for (const [rows, groupBy] of checks) {
      const expected = (await fromEvents(groupBy, lastMonth, thisMonth)).map((e) => ({ ...e, cost: units(e.cost) }));
      expect(sortById(rows.map(comparable))).toEqual(sortById(expected));
    }
    const [all] = await fromEvents(`'total'`, lastMonth, thisMonth);
    expect(comparable({ ...monthly.data.totals, id: 'total' })).toEqual({ ...all, cost: units(all.cost) });
    expect(monthly.data.totals.requests).toBe(40 + 2 + 5);

    // Compared with the month before, from its events too.
    const before = await fromEvents('provider', monthBefore, lastMonth);
    for (const row of monthly.data.byProvider) {
      const prev = before.find((b) => b.id === row.id)!;
      expect(row.previous).toEqual({ requests: prev.requests, cost: expect.any(Number) });
      expect(units(row.previous!.cost)).toBe(units(prev.cost));
      expect(row.change.requests).toBeCloseTo((row.requests - prev.requests) / prev.requests, 4);
    }
    // One row per day of the month, adding up to the totals.
    const days = Math.round((thisMonth.getTime() - lastMonth.getTime()) / DAY);
    expect(monthly.data.daily).toHaveLength(days);
    expect(monthly.data.daily.reduce((a, d) => a + d.requests, 0)).toBe(monthly.data.totals.requests);
  });

  it("shows Keyward's own 503 and 429 answers: per key, per token, by error type and in the error rate", async () => {
    const noKey = monthly.data.byKey.find((r) => r.id === 'none:openai')!;
    expect(noKey).toMatchObject({ label: 'No key: refused by Keyward', requests: 5, errors: 5, refusals: 5, cost: 0 });
    const web = monthly.data.byToken.find((r) => r.id === accessTokens['web-app'])!;
    expect(web.refusals).toBe(5);
    expect(web.label).toBe('web-app');
    const keyless = Object.fromEntries(
      monthly.data.errors.filter((e) => e.keyless).map((e) => [e.errorType, e.requests]),
    );
    expect(keyless).toEqual({ no_key: 2, usage_exceeded: 1, rate_limited: 2 });
    const [{ errors, requests }] = await t.dataSource.query(
      `SELECT count(*) FILTER (WHERE NOT success)::int AS errors, count(*)::int AS requests
         FROM usage_events WHERE "timestamp" >= $1 AND "timestamp" < $2`,
      [lastMonth, thisMonth],
    );
    expect(monthly.data.totals.errorRate).toBeCloseTo(errors / requests, 10);
    // Refusals spend nothing: they are never a top spender.
    expect(monthly.data.topSpenders.keys.map((k) => k.id)).not.toContain('none:openai');
    expect(monthly.data.topSpenders.keys[0].cost).toBeGreaterThanOrEqual(monthly.data.topSpenders.keys[1].cost);
  });

  it('downloads the report as CSV with the same figures', async () => {
    const res = await request(t.http).get(`/api/admin/reports/${monthly.id}.csv`).set(auth(auditorToken)).expect(200);
    expect(res.headers['content-type']).toMatch(/^text\/csv/);
    expect(res.headers['content-disposition']).toBe(
      `attachment; filename="usage-${iso(lastMonth)}_${iso(lastDay)}.csv"`,
    );
    const lines = res.text.trim().split('\n');
    const header = lines[0].split(',');
    expect(header.slice(0, 11)).toEqual([
      'section',
      'id',
      'name',
      'provider',
      'requests',
      'input_tokens',
      'output_tokens',
      'total_tokens',
      'errors',
      'error_rate',
      'cost_usd',
    ]);
    const cells = (line: string) => Object.fromEntries(line.split(',').map((v, i) => [header[i], v]));
    const total = cells(lines[1]);
    expect(total.section).toBe('total');
    expect(Number(total.requests)).toBe(monthly.data.totals.requests);
    expect(units(Number(total.cost_usd))).toBe(units(monthly.data.totals.cost));
    expect(Number(total.refusals)).toBe(5);
    const keyLines = lines
      .slice(1)
      .map(cells)
      .filter((c) => c.section === 'key');
    expect(keyLines).toHaveLength(monthly.data.byKey.length);
    const prod = keyLines.find((c) => c.id === keys.Prod)!;
    expect(prod.name).toBe('Prod');
    expect(Number(prod.reported_requests)).toBe(1);
    expect(lines.some((l) => l.startsWith('error_type,rate_limited,refused by Keyward'))).toBe(true);
  });

  it('lists and shows stored reports; generating needs an admin; bad periods are 400 problems', async () => {
    const list = await request(t.http).get('/api/admin/reports').set(auth(auditorToken)).expect(200);
    expect(list.body.reports.map((r: { id: string }) => r.id)).toContain(monthly.id);
    expect(list.body.reports[0].totals.requests).toBe(monthly.data.totals.requests);
    const one = await request(t.http).get(`/api/admin/reports/${monthly.id}`).set(auth(auditorToken)).expect(200);
    expect(one.body.data.totals).toEqual(monthly.data.totals);
    await request(t.http).get('/api/admin/reports/not-a-uuid').set(auth()).expect(400);
    await request(t.http).get('/api/admin/reports/00000000-0000-4000-8000-000000000000').set(auth()).expect(404);

    await request(t.http)
      .post('/api/admin/reports')
      .set(auth(auditorToken))
      .send({ from: iso(lastMonth), to: iso(lastDay) })
      .expect(403);
    for (const body of [
      { from: '2026-02-30', to: '2026-03-02' },
      { from: '2026-03-05', to: '2026-03-01' },
      { from: 'yesterday', to: '2026-03-01' },
      { from: '2024-01-01', to: '2026-01-01' },
      { from: '2026-01-01' },
    ]) {
      const res = await request(t.http).post('/api/admin/reports').set(auth()).send(body).expect(400);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(res.body.errors.length).toBeGreaterThan(0);
    }
  });

  it('makes the scheduled daily and monthly reports once across instances and announces them', async () => {
    const scheduler = t.app.get(ReportsScheduler);
    const made = await Promise.all([scheduler.runDue(), scheduler.runDue()]);
    expect(made.flat()).toHaveLength(2);
    expect(await scheduler.runDue()).toEqual([]);
    const rows = await t.dataSource.query(
      `SELECT kind, period_start FROM usage_reports WHERE generated_by = 'schedule' ORDER BY kind`,
    );
    expect(rows.map((r: { kind: string }) => r.kind)).toEqual(['daily', 'monthly']);
    const scheduledMonthly = generated.find((e) => e.kind === 'monthly')!;
    expect(scheduledMonthly.periodStart.getTime()).toBe(lastMonth.getTime());
    expect(scheduledMonthly.csv.split('\n')[1]).toMatch(/^total,/);
    expect(scheduledMonthly.summaryHtml).toContain('Top keys');
    // Announced once each: the on-demand monthly one, and the two scheduled ones.
    expect(generated.filter((e) => e.kind === 'monthly')).toHaveLength(2);
    expect(generated.filter((e) => e.kind === 'daily')).toHaveLength(1);
  });

  it('console: the reports list and a report page, whole or as htmx fragments; CSV; bad form input inline', async () => {
    const session = new ConsoleSession(t.http);
    await session.signIn();
    const page = await session.page('/admin/reports');
    expect(page.headers['vary']).toMatch(/HX-Request/);
    expect(page.text).toContain('<h1>Usage reports</h1>');
    expect(page.text).toContain(`/admin/reports/${monthly.id}`);
    const fragment = await session.htmx('get', '/admin/reports?kind=monthly').expect(200);
    expect(fragment.text).not.toContain('<html');
    expect(fragment.text).toContain('id="reports-list"');

    const show = await session.page(`/admin/reports/${monthly.id}`);
    expect(show.text).toContain('No key: refused by Keyward');
    expect(show.text).toContain('<svg');
    expect(show.text).toContain('web-app');
    const csv = await session.agent.get(`/admin/reports/${monthly.id}.csv`).expect(200);
    expect(csv.text.split('\n')[1]).toMatch(/^total,/);

    const bad = await session.post('/admin/reports', { from: '2026-02-30', to: '2026-03-01' });
    expect(bad.status).toBe(400);
    expect(bad.text).toContain('From must be a date');
    const good = await session.post('/admin/reports', { from: iso(lastDay), to: iso(lastDay) });
    expect(good.status).toBe(303);
    expect(good.headers.location).toMatch(/^\/admin\/reports\/[0-9a-f-]{36}$/);
  });
});
