import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import { generateOpenAiKey } from '../fake-providers';
import { UsageJournal } from '../../src/usage/usage-journal';
import type { UsageRecord } from '../../src/usage/usage-recorder';
import {
  ApiClient,
  BENCH_ADMIN,
  benchCommand,
  type Benchmark,
  describeMachine,
  log,
  markdownTable,
  ms,
  percentile,
  type RunningKeyward,
  startHelperProcess,
  startKeyward,
  writeSection,
} from './support';

/**
 * What durable mode costs: two Keywards on their embedded PostgreSQL, one with
 * `KEYWARD_USAGE_JOURNAL=off` and one with `=on`, the same JSON chat completion at fixed rates
 * (open loop), measured in alternating windows so that other work on the machine falls on both.
 */
/** Low enough that a shared 2-core machine keeps up with both Keywards. */
const RATES = [100, 300] as const;
const APPENDS = 50_000;
const WINDOWS = 4;
const WINDOW_S = 2;
const WARMUP_S = 2;
const CONNECTIONS = 50;

type Mode = 'off' | 'on';

interface Window {
  latencies: number[];
  answered: number;
  failed: number;
  seconds: number;
}

/** One request every 1000/rate ms for `seconds`, whatever the earlier ones did; latency to the last byte. */
async function paced(pool: Pool, path: string, headers: Record<string, string>, rate: number, seconds: number) {
  const body = JSON.stringify({ model: 'gpt-5', messages: [{ role: 'user', content: 'hi' }] });
  const count = Math.round(rate * seconds);
  const interval = 1000 / rate;
  const start = performance.now();
  const latencies: number[] = [];
  let failed = 0;
  const inFlight: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    const due = start + i * interval;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
    const sent = performance.now();
    inFlight.push(
      pool.request({ method: 'POST', path, headers, body }).then(
        async (res) => {
          await res.body.arrayBuffer();
          if (res.statusCode === 200) latencies.push(performance.now() - sent);
          else failed++;
        },
        () => void failed++,
      ),
    );
  }
  await Promise.all(inFlight);
  return { latencies, answered: latencies.length, failed, seconds: (performance.now() - start) / 1000 };
}

/** The journal's own cost per record, in this process: `APPENDS` appends of a gateway-sized record. */
function appendCost(): { meanUs: number; p99Us: number; maxUs: number; bytes: number } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'keyward-journal-bench-'));
  const journal = new UsageJournal<UsageRecord>(path.join(dir, 'usage-journal'), (m) => log(`journal: ${m}`));
  journal.open();
  const record: UsageRecord = {
    timestamp: new Date(),
    keyId: '0b7f7c5e-8f0e-4a51-9a56-1c1f0d1f3a11',
    provider: 'openai',
    accessTokenId: '7a4d8c1e-2b3f-4c5d-8e9f-0a1b2c3d4e5f',
    endpoint: '/chat/completions',
    model: 'gpt-5',
    inputTokens: 12,
    outputTokens: 5,
    cachedInputTokens: 0,
    totalTokens: 17,
    cost: 0.0000625,
    unpriced: false,
    latencyMs: 3,
    success: true,
    errorType: null,
    status: 200,
    attempt: 1,
    stream: false,
    source: 'gateway',
  };
  const samples: number[] = [];
  const started = performance.now();
  for (let i = 0; i < APPENDS; i++) {
    const t = performance.now();
    journal.append({ id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, record, spilled: false });
    samples.push((performance.now() - t) * 1000);
  }
  const total = performance.now() - started;
  journal.close();
  rmSync(dir, { recursive: true, force: true });
  samples.sort((a, b) => a - b);
  return {
    meanUs: (total * 1000) / APPENDS,
    p99Us: percentile(samples, 99),
    maxUs: samples[samples.length - 1],
    bytes: JSON.stringify(record).length + 80,
  };
}

export const journalBenchmark: Benchmark = {
  name: 'journal',
  description: 'gateway latency with the usage journal off and on (durable mode)',
  async run() {
    const runStarted = Date.now();
    const loadBefore = os.loadavg()[0];
    const append = appendCost();
    const fakeKey = generateOpenAiKey();
    const fake = await startHelperProcess<{ baseUrl: string }>('fake-server.ts', { BENCH_FAKE_KEY: fakeKey });
    const apps: Partial<Record<Mode, RunningKeyward>> = {};
    const pools: Pool[] = [];
    try {
      const targets: { mode: Mode; pool: Pool; headers: Record<string, string> }[] = [];
      for (const mode of ['off', 'on'] as const) {
        const app = await startKeyward({
          env: { KEYWARD_PROVIDER_OPENAI_BASE_URL: fake.info.baseUrl, KEYWARD_USAGE_JOURNAL: mode },
        });
        apps[mode] = app;
        const api = new ApiClient(app.url);
        await api.signIn(BENCH_ADMIN.email, BENCH_ADMIN.password);
        await api.request('POST', '/api/admin/api-keys', { provider: 'openai', name: 'bench', key: fakeKey }, 201);
        const token = await api.request<{ token: string }>('POST', '/api/admin/access-tokens', { name: 'b' }, 201);
        const pool = new Pool(app.url, { connections: CONNECTIONS });
        pools.push(pool);
        targets.push({
          mode,
          pool,
          headers: { authorization: `Bearer ${token.body.token}`, 'content-type': 'application/json' },
        });
      }
      const path = '/proxy/openai/v1/chat/completions';
      const rows: string[][] = [];
      const p50s: Record<string, number> = {};
      for (const rate of RATES) {
        for (const t of targets) await paced(t.pool, path, t.headers, rate, WARMUP_S);
        const windows: Record<Mode, Window[]> = { off: [], on: [] };
        for (let w = 0; w < WINDOWS; w++) {
          for (const t of targets) windows[t.mode].push(await paced(t.pool, path, t.headers, rate, WINDOW_S));
        }
        for (const mode of ['off', 'on'] as const) {
          const all = windows[mode].flatMap((w) => w.latencies).sort((a, b) => a - b);
          const failed = windows[mode].reduce((a, w) => a + w.failed, 0);
          if (failed > 0) throw new Error(`journal ${mode}: ${failed} calls failed at ${rate} req/s`);
          const achieved =
            windows[mode].reduce((a, w) => a + w.answered, 0) / windows[mode].reduce((a, w) => a + w.seconds, 0);
          p50s[`${rate}:${mode}`] = percentile(all, 50);
          rows.push([
            String(rate),
            mode,
            achieved.toFixed(0),
            ms(percentile(all, 50)),
            ms(percentile(all, 90)),
            ms(percentile(all, 99)),
          ]);
        }
      }
      for (const app of Object.values(apps)) {
        const problems = app!.problems().filter((l) => !/Redis|rate limit/i.test(l));
        if (problems.length > 0) throw new Error(`Keyward logged problems:\n${problems.slice(0, 5).join('\n')}`);
      }
      const loadAfter = os.loadavg()[0];
      const added = RATES.map(
        (rate) => `${rate} req/s: ${(p50s[`${rate}:on`] - p50s[`${rate}:off`]).toFixed(2)} ms at p50`,
      ).join('; ');
      writeSection(
        'journal',
        `## Usage journal (\`journal\`)

- Command: \`${benchCommand()}\` (measured ${new Date().toISOString()}, whole run ${Math.round((Date.now() - runStarted) / 1000)} s)
- Machine: ${describeMachine()}; the load generator, the fake OpenAI and two Keywards (each with its embedded PostgreSQL) share it,
  and it is not reserved: one-minute load average ${loadBefore.toFixed(2)} before the run, ${loadAfter.toFixed(2)} at the end of the load
- Method: the same JSON chat completion through \`/proxy/openai/…\`, open loop (one request every 1000/rate ms over ${CONNECTIONS} connections),
  ${WARMUP_S} s warm-up per Keyward, then ${WINDOWS} windows of ${WINDOW_S} s on each, alternating; latency to the last byte.
  \`off\`: usage batched to PostgreSQL every 200 ms (a SIGKILL can lose the batch). \`on\`: each record is also written to the
  journal file before the call ends (a \`write(2)\`), \`fdatasync\` every 20 ms for all of them.

Latency in ms:

${markdownTable(['Offered req/s', 'Journal', 'Achieved req/s', 'p50', 'p90', 'p99'], rows)}

**Cost of the journal:** ${added} (the difference between two Keywards on a shared machine: noise of the same size as the cost).

The journal's own work, measured in-process: ${APPENDS.toLocaleString('en-US')} appends of a gateway record (about ${append.bytes} bytes
each, \`write(2)\` per record, \`fdatasync\` every 20 ms in the background): **${append.meanUs.toFixed(1)} µs per record** on average,
p99 ${append.p99Us.toFixed(1)} µs, slowest ${(append.maxUs / 1000).toFixed(1)} ms.`,
      );
    } finally {
      await Promise.all(pools.map((p) => p.close().catch(() => undefined)));
      for (const app of Object.values(apps)) await app?.stop();
      await fake.stop();
    }
    log('journal: done');
  },
};
