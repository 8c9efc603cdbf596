import { partitionName, UsagePartitions } from '../../src/usage/usage-partitions';
import { UsageRecorder, type UsageRecord } from '../../src/usage/usage-recorder';
import { startTestApp, type TestApp } from '../support/test-app';

const record = (timestamp: Date): UsageRecord => ({
  timestamp,
  keyId: null,
  provider: 'openai',
  accessTokenId: null,
  endpoint: '/chat/completions',
  model: 'gpt-5',
  inputTokens: 1,
  outputTokens: 1,
  cachedInputTokens: 0,
  totalTokens: 2,
  cost: 0,
  unpriced: false,
  latencyMs: 1,
  success: true,
  errorType: null,
  status: 200,
  attempt: 1,
  stream: false,
  source: 'gateway',
});

describe('usage_events partitions by month', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  const whereIs = async (id: string) =>
    (await t.dataSource.query(`SELECT tableoid::regclass::text AS part FROM usage_events WHERE id = $1`, [id]))[0]
      ?.part as string | undefined;

  it('has this month and the next two at start, and new rows land in their month', async () => {
    const now = new Date();
    const parts: { name: string }[] = await t.dataSource.query(
      `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'usage_events'::regclass ORDER BY 1`,
    );
    for (let i = 0; i <= 2; i++) {
      expect(parts.map((p) => p.name)).toContain(
        partitionName(new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + i, 1))),
      );
    }
    const recorder = t.app.get(UsageRecorder);
    recorder.record(record(now));
    await recorder.flush();
    const [{ id }] = await t.dataSource.query(`SELECT id FROM usage_events ORDER BY "timestamp" DESC LIMIT 1`);
    expect(await whereIs(id)).toBe(partitionName(new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1))));
  });

  it('moves rows that waited in the default partition into their month when it is created', async () => {
    const recorder = t.app.get(UsageRecorder);
    const later = new Date(Date.UTC(new Date().getUTCFullYear() + 1, 5, 15));
    recorder.record(record(later));
    await recorder.flush();
    const [{ id }] = await t.dataSource.query(`SELECT id FROM usage_events WHERE "timestamp" = $1`, [later]);
    expect(await whereIs(id)).toBe('usage_events_default');

    const made = await t.app.get(UsagePartitions).ensure(new Date(Date.UTC(later.getUTCFullYear(), 5, 1)));
    expect(made[0]).toBe(partitionName(new Date(Date.UTC(later.getUTCFullYear(), 5, 1))));
    expect(await whereIs(id)).toBe(made[0]);
    expect(await t.app.get(UsagePartitions).ensure(new Date(Date.UTC(later.getUTCFullYear(), 5, 1)))).toEqual([]);
  });
});
