import request from 'supertest';
import { UsageRecorder, type UsageRecord } from '../../src/usage/usage-recorder';
import { startFakeProvider, type OpenAiFakeProvider } from '../fake-providers';
import { apiToken, startTestApp, type TestApp } from '../support/test-app';

/**
 * The rollups the reports read are summed by the recorder, not by the database: they must agree
 * with the events to the last unit of numeric(18, 8), and a batch written again (a replay, a
 * retry after an unclear failure) must add nothing.
 */
describe('Usage rollups (real PostgreSQL)', () => {
  let t: TestApp;
  let openai: OpenAiFakeProvider;
  let keyId: string;

  beforeAll(async () => {
    openai = await startFakeProvider('openai');
    process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL = openai.baseUrl;
    t = await startTestApp();
    const token = await apiToken(t.http);
    const res = await request(t.http)
      .post('/api/admin/api-keys')
      .set('authorization', `Bearer ${token}`)
      .send({ provider: 'openai', name: 'Rollups', key: openai.generateKey() })
      .expect(201);
    keyId = (res.body as { id: string }).id;
  });

  afterAll(async () => {
    await t.close();
    await openai.close();
    delete process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL;
  });

  const record = (i: number, timestamp: Date): UsageRecord => ({
    timestamp,
    keyId: i % 7 === 0 ? null : keyId,
    provider: 'openai',
    accessTokenId: null,
    endpoint: '/v1/chat/completions',
    model: i % 3 === 0 ? 'gpt-5' : i % 3 === 1 ? 'gpt-4o' : null,
    inputTokens: i,
    outputTokens: 2 * i,
    cachedInputTokens: 0,
    totalTokens: 3 * i,
    // Costs with more decimals than the column keeps, half units and exponent forms among them.
    cost: [0.000000005, 1.234567895, 6.5e-7, 0.1 + 0.2, 3.3333333333, 0][i % 6],
    unpriced: i % 5 === 0,
    latencyMs: i % 11,
    success: i % 4 !== 0,
    errorType: i % 4 === 0 ? (i % 8 === 0 ? null : 'rate_limited') : null,
    status: i % 4 === 0 ? 429 : 200,
    attempt: 1,
    stream: false,
    source: 'gateway',
  });

  async function sums(): Promise<{
    events: Record<string, string>[];
    rollups: Record<string, Record<string, string>[]>;
  }> {
    const events = await t.dataSource.query<Record<string, string>[]>(
      `SELECT count(*)::text AS requests, sum(total_tokens)::text AS tokens, sum(cost)::text AS cost,
              count(*) FILTER (WHERE NOT success)::text AS errors, count(*) FILTER (WHERE unpriced)::text AS unpriced
         FROM usage_events`,
    );
    const rollups: Record<string, Record<string, string>[]> = {};
    for (const bucket of ['hour', 'day']) {
      rollups[bucket] = await t.dataSource.query<Record<string, string>[]>(
        `SELECT sum(requests)::text AS requests, sum(total_tokens)::text AS tokens, sum(cost)::text AS cost,
                sum(errors)::text AS errors, sum(unpriced_requests)::text AS unpriced
           FROM usage_rollups WHERE bucket = $1`,
        [bucket],
      );
    }
    return { events, rollups };
  }

  it('sums every hour and day to exactly what the events hold', async () => {
    const recorder = t.app.get(UsageRecorder);
    const now = Date.now();
    // Spread over three days, so that batches touch several hourly and daily rows.
    for (let i = 1; i <= 600; i++) recorder.record(record(i, new Date(now - (i % 72) * 3_600_000)));
    await recorder.flush();
    const { events, rollups } = await sums();
    expect(events[0].requests).toBe('600');
    expect(rollups.hour).toEqual(events);
    expect(rollups.day).toEqual(events);
    // Per day, too: the grouping, not only the total.
    const perDay = await t.dataSource.query<{ day: string; events: string; rollup: string }[]>(
      `SELECT e.day::text, e.cost::text AS events, r.cost::text AS rollup
         FROM (SELECT date_trunc('day', "timestamp" AT TIME ZONE 'UTC') AS day, sum(cost) AS cost FROM usage_events GROUP BY 1) e
         JOIN (SELECT period_start AT TIME ZONE 'UTC' AS day, sum(cost) AS cost FROM usage_rollups WHERE bucket = 'day' GROUP BY 1) r
           USING (day)`,
    );
    expect(perDay.length).toBeGreaterThanOrEqual(3);
    for (const row of perDay) expect(row.rollup).toBe(row.events);
  });

  it('writes a steady stream of records in full batches, not a transaction per few records', async () => {
    const recorder = t.app.get(UsageRecorder);
    await recorder.flush();
    const batches: number[] = [];
    recorder.onCommitted((records) => batches.push(records.length));
    // About 12,000 records a second for 1.5 s, in small groups across event-loop turns, as a busy
    // gateway hands them over: the queue passes a full batch (1,000) while a write is under way.
    const until = Date.now() + 1_500;
    let sent = 0;
    while (Date.now() < until) {
      for (let i = 0; i < 24; i++) recorder.record(record(++sent, new Date()));
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    await recorder.flush();
    expect(batches.reduce((a, b) => a + b, 0)).toBe(sent);
    // One full batch at a time (plus the timer's partial ones), never one per record past 1,000.
    expect(batches.length).toBeLessThanOrEqual(Math.ceil(sent / 1_000) + 10);
    expect(sent / batches.length).toBeGreaterThan(300);
  });

  it('two instances writing into the same rollup rows at once lose nothing and never deadlock', async () => {
    const second = await startTestApp({}, { instanceOf: t });
    try {
      const before = await sums();
      const recorders = [t.app.get(UsageRecorder), second.app.get(UsageRecorder)];
      const now = Date.now();
      // The same hours, models and error types from both, in opposite orders, several batches each.
      for (let i = 1; i <= 3_000; i++) {
        recorders[0].record(record(i, new Date(now - (i % 6) * 3_600_000)));
        recorders[1].record(record(3_001 - i, new Date(now - ((3_001 - i) % 6) * 3_600_000)));
      }
      await Promise.all(recorders.map((r) => r.flush()));
      const after = await sums();
      expect(Number(after.events[0].requests) - Number(before.events[0].requests)).toBe(6_000);
      expect(after.rollups.hour).toEqual(after.events);
      expect(after.rollups.day).toEqual(after.events);
      expect(second.logs.text).not.toMatch(/deadlock/i);
      expect(t.logs.text).not.toMatch(/deadlock/i);
    } finally {
      await second.close();
    }
  });

  it('adds nothing when a batch is written again', async () => {
    const before = await sums();
    const recorder = t.app.get(UsageRecorder) as unknown as {
      dataSource: TestApp['dataSource'];
      write(manager: unknown, all: UsageRecord[], ids: string[], mayRepeat: boolean): Promise<Set<string>>;
    };
    const [row] = await t.dataSource.query<{ record_id: string; timestamp: Date }[]>(
      `SELECT record_id, "timestamp" FROM usage_events WHERE key_id IS NOT NULL LIMIT 1`,
    );
    const again = { ...record(1, row.timestamp) };
    const inserted = await t.dataSource.transaction((manager) =>
      recorder.write(manager, [again], [row.record_id], true),
    );
    expect(inserted.size).toBe(0);
    expect(await sums()).toEqual(before);
  });
});
