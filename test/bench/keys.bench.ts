import { performance } from 'node:perf_hooks';
import { startFakeProvider, type OpenAiFakeProvider } from '../fake-providers';
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
 * Key management through the JSON API with 10,000 keys in the embedded PostgreSQL, against the
 * spec's "Key operations < 500ms". Requests go one at a time (latency, not throughput), except
 * the seeding of the 10,000 keys, which runs SEED_CONCURRENCY in flight and reports keys/s.
 */

const BUDGET_MS = 500;
const TOTAL_KEYS = 10_000;
const SAMPLES = 200;
const WARMUP = 20;
const SEED_CONCURRENCY = 16;
const KEYS = '/api/admin/api-keys';

interface KeyView {
  id: string;
  name: string;
}

interface Row {
  operation: string;
  request: string;
  stats: Stats;
}

/** Deterministic spread of indices for "get one key" (no Math.random, so runs are comparable). */
const spread = (i: number) => (i * 7919) % TOTAL_KEYS;

async function runKeys(): Promise<void> {
  const fake: OpenAiFakeProvider = await startFakeProvider('openai');
  let app: RunningKeyward | undefined;
  const began = performance.now();
  try {
    app = await startKeyward({ env: { KEYWARD_PROVIDER_OPENAI_BASE_URL: fake.baseUrl } });
    log(
      `keys: Keyward ready in ${(app.readyAfterMs / 1000).toFixed(1)} s at ${app.url} (${app.databaseMode} PostgreSQL)`,
    );
    if (app.databaseMode !== 'embedded') throw new Error(`expected the embedded PostgreSQL, got ${app.databaseMode}`);
    const api = new ApiClient(app.url);
    await api.signIn(BENCH_ADMIN.email, BENCH_ADMIN.password);

    // Key i is named bench-<i>; ids[i] is its id once created.
    const ids: string[] = new Array<string>(TOTAL_KEYS);
    const create = async (i: number) => {
      const res = await api.request<KeyView>(
        'POST',
        KEYS,
        { provider: 'openai', name: `bench-${i}`, key: fake.generateKey() },
        201,
      );
      ids[i] = res.body.id;
    };
    const rows: Row[] = [];
    const record = (operation: string, request: string, samples: number[]) => {
      const row = { operation, request, stats: stats(samples) };
      rows.push(row);
      log(
        `keys: ${operation.padEnd(34)} median ${ms(row.stats.median).padStart(6)} ms   p99 ${ms(row.stats.p99).padStart(6)} ms`,
      );
    };

    // 1. create, then seed up to TOTAL_KEYS in parallel.
    record('create', `POST ${KEYS}`, await measureSequential(SAMPLES, WARMUP, create));
    const created = WARMUP + SAMPLES;
    const seedStarted = performance.now();
    await runPool(TOTAL_KEYS - created, SEED_CONCURRENCY, (i) => create(created + i));
    const seedSeconds = (performance.now() - seedStarted) / 1000;
    const seedRate = (TOTAL_KEYS - created) / seedSeconds;
    log(`keys: seeded ${TOTAL_KEYS - created} keys in ${seedSeconds.toFixed(1)} s (${seedRate.toFixed(0)} keys/s)`);

    // 2. list with TOTAL_KEYS keys.
    const list = (query: string, total: number) => async () => {
      const res = await api.request<{ keys: KeyView[]; total: number }>('GET', `${KEYS}?${query}`);
      if (res.body.total !== total || res.body.keys.length === 0) {
        throw new Error(
          `GET ${KEYS}?${query}: total ${res.body.total} (${res.body.keys.length} on the page), expected ${total}`,
        );
      }
    };
    // bench-99, bench-990..999, bench-9900..9999
    const matching = 1 + 10 + 100;
    const lists: [string, string, number][] = [
      ['list, first page', 'pageSize=50', TOTAL_KEYS],
      ['list, page 100', 'page=100&pageSize=50', TOTAL_KEYS],
      ['list, name filter (111 match)', 'q=bench-99&pageSize=50', matching],
      ['list, sorted by name', 'sort=name&pageSize=50', TOTAL_KEYS],
    ];
    for (const [operation, query, total] of lists) {
      record(operation, `GET ${KEYS}?${query}`, await measureSequential(SAMPLES, WARMUP, list(query, total)));
    }

    // 3. get one key, spread over all of them.
    record(
      'get one key',
      `GET ${KEYS}/:id`,
      await measureSequential(SAMPLES, WARMUP, (i) => api.request('GET', `${KEYS}/${ids[spread(i)]}`)),
    );

    // 4. verify: one call to the fake provider each, on keys 0..219 (each verified once).
    record(
      'verify (loopback fake provider)',
      `POST ${KEYS}/:id/verify`,
      await measureSequential(SAMPLES, WARMUP, async (i) => {
        const res = await api.request<{ valid: boolean }>('POST', `${KEYS}/${ids[i]}/verify`);
        if (res.body.valid !== true) throw new Error(`verify of bench-${i}: ${JSON.stringify(res.body)}`);
      }),
    );

    // 5. rotate with an admin-supplied key: keys 220..439, one rotation each.
    const rotateBase = created;
    record(
      'rotate (new key supplied)',
      `PUT ${KEYS}/:id/rotate`,
      await measureSequential(SAMPLES, WARMUP, (i) =>
        api.request('PUT', `${KEYS}/${ids[rotateBase + i]}/rotate`, { key: fake.generateKey() }),
      ),
    );

    // 6. revoke: keys 440..659, one each.
    const revokeBase = rotateBase + WARMUP + SAMPLES;
    record(
      'revoke',
      `POST ${KEYS}/:id/revoke`,
      await measureSequential(SAMPLES, WARMUP, (i) => api.request('POST', `${KEYS}/${ids[revokeBase + i]}/revoke`)),
    );

    const problems = app.problems();
    log(`keys: the app logged ${problems.length} warning/error line(s)`);
    for (const line of problems.slice(0, 5)) log(`  ${line.slice(0, 400)}`);
    const code = await app.stop();
    app = undefined;
    if (code !== 0) throw new Error(`Keyward exited with ${code} after SIGTERM`);
    const totalSeconds = (performance.now() - began) / 1000;
    report(rows, { seedRate, seedSeconds, seeded: TOTAL_KEYS - created, totalSeconds });
  } finally {
    await app?.stop().catch(() => undefined);
    await fake.close();
  }
}

function report(
  rows: Row[],
  seed: { seedRate: number; seedSeconds: number; seeded: number; totalSeconds: number },
): void {
  const table = markdownTable(
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
  );
  const over = rows.filter((r) => r.stats.median >= BUDGET_MS || r.stats.p99 >= BUDGET_MS);
  const worstMedian = rows.reduce((a, b) => (b.stats.median > a.stats.median ? b : a));
  const worstP99 = rows.reduce((a, b) => (b.stats.p99 > a.stats.p99 ? b : a));
  const budget =
    over.length === 0
      ? `**Budget (spec: "Key operations < 500ms"): met.** Every median and every p99 is under ${BUDGET_MS} ms; ` +
        `the slowest median is ${worstMedian.operation} at ${ms(worstMedian.stats.median)} ms ` +
        `(${pct(worstMedian.stats.median)} of the budget), the slowest p99 is ${worstP99.operation} at ` +
        `${ms(worstP99.stats.p99)} ms (${pct(worstP99.stats.p99)}).`
      : `**Budget (spec: "Key operations < 500ms"): NOT met** by ` +
        over.map((r) => `${r.operation} (median ${ms(r.stats.median)} ms, p99 ${ms(r.stats.p99)} ms)`).join('; ') +
        '.';
  const section = `## Key operations (\`keys\`)

- Command: \`${benchCommand()}\` (measured ${new Date().toISOString()}, whole run ${seed.totalSeconds.toFixed(0)} s)
- Machine: ${describeMachine()}
- PostgreSQL: embedded (no \`DATABASE_URL\`), fresh data folder; provider calls go to the loopback fake OpenAI
- Data: ${TOTAL_KEYS.toLocaleString('en-US')} OpenAI keys (\`bench-0\` … \`bench-${TOTAL_KEYS - 1}\`) when the list, get, verify, rotate and revoke samples are taken
- Method: ${WARMUP} unmeasured warm-up requests, then ${SAMPLES} measured ones, sequentially over one keep-alive connection, as the owner with a JWT.
  create: one new key per request. verify: a different key each time (one call to the fake's \`/v1/models\`).
  rotate: a different key each time, one rotation each, with a new admin-supplied key (no grace period).
  revoke: a different key each time. get: keys spread over all ${TOTAL_KEYS.toLocaleString('en-US')}.
- Seeding the other ${seed.seeded.toLocaleString('en-US')} keys, ${SEED_CONCURRENCY} requests in flight: ${seed.seedSeconds.toFixed(1)} s, **${seed.seedRate.toFixed(0)} keys/s**

Times in ms:

${table}

${budget}
`;
  log();
  log(table);
  log();
  log(budget);
  writeSection('keys', section);
}

const pct = (value: number) => `${((value / BUDGET_MS) * 100).toFixed(1)} %`;

export const keysBenchmark: Benchmark = {
  name: 'keys',
  description: 'create, list (10,000 keys), get, verify, rotate and revoke through the JSON API',
  run: runKeys,
};
