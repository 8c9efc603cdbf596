import { performance } from 'node:perf_hooks';
import { Client } from 'pg';
import { runningEmbeddedServer } from '../../src/cli/context';
import { startFakeProvider } from '../fake-providers';
import {
  ApiClient,
  BENCH_ADMIN,
  benchCommand,
  type Benchmark,
  describeMachine,
  log,
  markdownTable,
  measureSequential,
  ms,
  runPool,
  type RunningKeyward,
  startKeyward,
  stats,
  type Stats,
  writeSection,
} from './support';

/**
 * The usage store at scale: 10 million usage events over the last 60 days (and their hourly and
 * daily rollups) in the embedded PostgreSQL, seeded with SQL (generate_series), not through the
 * recorder; then the usage reports through the JSON API, against a 200 ms budget per median.
 * Opt-in (`npm run bench -- usage-store`): the seeding takes minutes.
 */

const BUDGET_MS = 200;
const EVENTS = Number(process.env.KEYWARD_BENCH_USAGE_EVENTS ?? 10_000_000);
const CHUNK = 1_000_000;
const KEYS = 100;
const DAYS = 60;
const MODELS = ['gpt-5', 'gpt-5-mini', 'gpt-4.1', 'o3', 'gpt-4o'];
const SAMPLES = 50;
const WARMUP = 5;

interface Row {
  operation: string;
  request: string;
  stats: Stats;
}

const monthStart = (year: number, month: number) => new Date(Date.UTC(year, month, 1));

async function runUsageStore(): Promise<void> {
  const fake = await startFakeProvider('openai');
  let app: RunningKeyward | undefined;
  let db: Client | undefined;
  const began = performance.now();
  try {
    app = await startKeyward({ env: { KEYWARD_PROVIDER_OPENAI_BASE_URL: fake.baseUrl } });
    if (app.databaseMode !== 'embedded') throw new Error(`expected the embedded PostgreSQL, got ${app.databaseMode}`);
    const api = new ApiClient(app.url);
    await api.signIn(BENCH_ADMIN.email, BENCH_ADMIN.password);
    const ids: string[] = new Array<string>(KEYS);
    await runPool(KEYS, 8, async (i) => {
      const res = await api.request<{ id: string }>(
        'POST',
        '/api/admin/api-keys',
        { provider: 'openai', name: `usage-${i}`, key: fake.generateKey() },
        201,
      );
      ids[i] = res.body.id;
    });

    const server = await runningEmbeddedServer(app.dataDir);
    if (!server) throw new Error('the embedded PostgreSQL of the benchmark app is not running');
    db = new Client({ connectionString: server.url });
    await db.connect();

    // Monthly partitions for the seeded past, as the app makes them for the months ahead.
    const now = new Date();
    for (let back = Math.ceil(DAYS / 28) + 1; back >= 1; back--) {
      const from = monthStart(now.getUTCFullYear(), now.getUTCMonth() - back);
      const to = monthStart(from.getUTCFullYear(), from.getUTCMonth() + 1);
      const name = `usage_events_${from.getUTCFullYear()}_${String(from.getUTCMonth() + 1).padStart(2, '0')}`;
      await db.query(
        `CREATE TABLE IF NOT EXISTS ${name} PARTITION OF usage_events FOR VALUES FROM ('${from.toISOString()}') TO ('${to.toISOString()}')`,
      );
    }

    // Seeding speed: the two indexes are built once after the rows are in (a sorted build, not 10
    // million random inserts into a btree), the session skips waiting for WAL flushes, and two
    // connections insert at once (one per core).
    await db.query(`SET maintenance_work_mem = '512MB'`);
    await db.query(`ALTER TABLE usage_events DROP CONSTRAINT usage_events_pkey`);
    await db.query(`DROP INDEX usage_events_key_idx`);
    const workers = await Promise.all(
      [0, 1].map(async () => {
        const c = new Client({ connectionString: server.url });
        await c.connect();
        await c.query(`SET synchronous_commit = off`);
        return c;
      }),
    );

    // Events i = 1..N spread evenly over the last DAYS days, round-robin over keys and models;
    // one in 50 failed. Deterministic, so runs compare.
    const seedStarted = performance.now();
    const chunks: [number, number][] = [];
    for (let start = 1; start <= EVENTS; start += CHUNK) chunks.push([start, Math.min(EVENTS, start + CHUNK - 1)]);
    let inserted = 0;
    await Promise.all(
      workers.map(async (worker, w) => {
        for (let c = w; c < chunks.length; c += workers.length) {
          const [start, end] = chunks[c];
          await worker.query(
            `INSERT INTO usage_events ("timestamp", key_id, provider, endpoint, model, input_tokens, output_tokens,
                                       total_tokens, cost, latency_ms, success, error_type, status, attempt, stream, source)
             SELECT now() - make_interval(secs => g::float8 * $4 / $3),
                    ($1::uuid[])[1 + g % ${KEYS}], 'openai', '/v1/chat/completions',
                    ($2::text[])[1 + (g / ${KEYS}) % ${MODELS.length}],
                    100 + g % 900, 20 + g % 300, 120 + g % 900 + g % 300,
                    (100 + g % 900) * 0.00000125 + (20 + g % 300) * 0.00001,
                    200 + g % 800, g % 50 <> 0, CASE WHEN g % 50 = 0 THEN 'server_error' END,
                    CASE WHEN g % 50 = 0 THEN 500 ELSE 200 END, 1, g % 3 = 0, 'gateway'
               FROM generate_series($5::bigint, $6::bigint) AS g`,
            [ids, MODELS, EVENTS, DAYS * 86_400, start, end],
          );
          inserted += end - start + 1;
          log(
            `usage-store: ${inserted.toLocaleString('en')} events (${((performance.now() - seedStarted) / 1000).toFixed(0)} s)`,
          );
        }
      }),
    );
    const insertSeconds = (performance.now() - seedStarted) / 1000;
    await Promise.all([
      workers[0]
        .query(`SET maintenance_work_mem = '512MB'`)
        .then(() => workers[0].query(`ALTER TABLE usage_events ADD PRIMARY KEY (id, "timestamp")`)),
      workers[1]
        .query(`SET maintenance_work_mem = '512MB'`)
        .then(() => workers[1].query(`CREATE INDEX usage_events_key_idx ON usage_events (key_id, "timestamp")`)),
    ]);
    const eventSeconds = (performance.now() - seedStarted) / 1000;
    log(`usage-store: indexes built in ${(eventSeconds - insertSeconds).toFixed(0)} s`);

    // Hourly rollups from the events (each connection takes half of the keys), daily ones from the
    // hourly (the same sums).
    const rollupStarted = performance.now();
    const halves = [ids.slice(0, KEYS / 2), ids.slice(KEYS / 2)];
    await Promise.all(
      workers.map(async (worker, w) => {
        await worker.query(`SET work_mem = '256MB'`);
        await worker.query(
          `INSERT INTO usage_rollups (bucket, period_start, key_id, provider, model, requests, errors, input_tokens,
                                      output_tokens, total_tokens, cost, latency_ms_sum)
           SELECT 'hour', date_trunc('hour', "timestamp" AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', key_id, provider,
                  coalesce(model, ''), count(*), count(*) FILTER (WHERE NOT success), sum(input_tokens),
                  sum(output_tokens), sum(total_tokens), sum(cost), sum(latency_ms)
             FROM usage_events WHERE key_id = ANY($1::uuid[]) GROUP BY 2, 3, 4, 5`,
          [halves[w]],
        );
      }),
    );
    await db.query(
      `INSERT INTO usage_rollups (bucket, period_start, key_id, provider, model, requests, errors, input_tokens,
                                  output_tokens, total_tokens, cost, latency_ms_sum)
       SELECT 'day', date_trunc('day', period_start AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', key_id, provider, model,
              sum(requests), sum(errors), sum(input_tokens), sum(output_tokens), sum(total_tokens), sum(cost),
              sum(latency_ms_sum)
         FROM usage_rollups WHERE bucket = 'hour' GROUP BY 2, 3, 4, 5`,
    );
    // Vacuumed before measuring, as autovacuum would have done by then in steady state: measured
    // alongside a first autovacuum of 10 million fresh rows, the reports would time that instead.
    await Promise.all([
      workers[0].query('VACUUM (ANALYZE) usage_events'),
      workers[1].query('VACUUM (ANALYZE) usage_rollups'),
    ]);
    for (const w of workers) await w.end();
    const rollupSeconds = (performance.now() - rollupStarted) / 1000;
    const [counts] = (
      await db.query<{ events: string; hours: string; days: string; size: string }>(
        `SELECT (SELECT count(*) FROM usage_events) AS events,
                (SELECT count(*) FROM usage_rollups WHERE bucket = 'hour') AS hours,
                (SELECT count(*) FROM usage_rollups WHERE bucket = 'day') AS days,
                pg_size_pretty(pg_database_size(current_database())) AS size`,
      )
    ).rows;
    log(
      `usage-store: seeded ${Number(counts.events).toLocaleString('en')} events in ${eventSeconds.toFixed(0)} s, ` +
        `rollups (${Number(counts.hours).toLocaleString('en')} hourly, ${Number(counts.days).toLocaleString('en')} daily) in ${rollupSeconds.toFixed(0)} s; database ${counts.size}`,
    );

    const rows: Row[] = [];
    const measure = async (operation: string, url: string) => {
      const samples = await measureSequential(SAMPLES, WARMUP, () => api.request('GET', url));
      const row = { operation, request: `GET ${url.replace(ids[7], ':id')}`, stats: stats(samples) };
      rows.push(row);
      log(
        `usage-store: ${operation.padEnd(30)} median ${ms(row.stats.median).padStart(6)} ms   p99 ${ms(row.stats.p99).padStart(6)} ms`,
      );
    };
    for (const group of ['key', 'provider', 'model', 'day']) {
      await measure(`report, 30 days by ${group}`, `/api/admin/usage?groupBy=${group}`);
    }
    const from = new Date(Date.now() - 59 * 86_400_000).toISOString().slice(0, 10);
    await measure('report, 60 days by key', `/api/admin/usage?groupBy=key&from=${from}`);
    await measure("a key's usage (30 days, 12 months)", `/api/admin/api-keys/${ids[7]}/usage`);
    await measure('report, one key, 30 days by day', `/api/admin/usage?groupBy=day&keyId=${ids[7]}`);

    const slowest = rows.reduce((a, b) => (b.stats.median > a.stats.median ? b : a));
    const met = rows.every((r) => r.stats.median < BUDGET_MS);
    writeSection(
      'usage-store',
      [
        '## Usage store at scale (`usage-store`)',
        '',
        `- Command: \`${benchCommand()}\` (measured ${new Date().toISOString()}, whole run ${((performance.now() - began) / 1000).toFixed(0)} s; opt-in, not part of \`npm run bench\`)`,
        `- Machine: ${describeMachine()}`,
        '- PostgreSQL: embedded (no `DATABASE_URL`), fresh data folder',
        `- Data: ${Number(counts.events).toLocaleString('en')} usage events over the last ${DAYS} days (monthly partitions), ${KEYS} OpenAI keys, ${MODELS.length} models, 1 in 50 failed; ` +
          `rollups: ${Number(counts.hours).toLocaleString('en')} hourly and ${Number(counts.days).toLocaleString('en')} daily rows; database ${counts.size}`,
        `- Seeding (SQL \`generate_series\` on two connections, not through the recorder; the two event indexes built after the rows): events ${eventSeconds.toFixed(0)} s (${(Number(counts.events) / eventSeconds / 1000).toFixed(0)}k rows/s, indexes included), rollups and vacuum ${rollupSeconds.toFixed(0)} s`,
        `- Method: ${WARMUP} unmeasured warm-up requests, then ${SAMPLES} measured ones, sequentially, as the owner with a JWT`,
        '',
        'Times in ms:',
        '',
        markdownTable(
          ['Operation', 'Request', 'n', 'Median', 'p99', 'Mean', 'Min', 'Max'],
          rows.map((r) => [
            r.operation,
            `\`${r.request}\``,
            String(r.stats.n),
            ms(r.stats.median),
            ms(r.stats.p99),
            ms(r.stats.mean),
            ms(r.stats.min),
            ms(r.stats.max),
          ]),
        ),
        '',
        `**Budget (median under ${BUDGET_MS} ms): ${met ? 'met' : 'NOT met'}.** The slowest median is ${slowest.operation} at ${ms(slowest.stats.median)} ms. ` +
          'Reports read the hourly/daily rollups, which the recorder maintains in the same transaction as the events, so their cost follows the number of keys × models × days, not the number of events.',
      ].join('\n'),
    );
    const problems = app.problems();
    if (problems.length > 0)
      log(`usage-store: the app logged ${problems.length} warning(s):\n${problems.slice(0, 5).join('\n')}`);
  } finally {
    await db?.end().catch(() => undefined);
    await app?.stop();
    await fake.close();
  }
}

export const usageStoreBenchmark: Benchmark = {
  name: 'usage-store',
  description: `usage reports over ${EVENTS.toLocaleString('en')} seeded usage events (opt-in: minutes of seeding)`,
  optIn: true,
  run: runUsageStore,
};
