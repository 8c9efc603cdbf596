import { Pool } from 'undici';
import { generateOpenAiKey } from '../fake-providers';
import {
  ApiClient,
  BENCH_ADMIN,
  type Benchmark,
  type HelperProcess,
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
 * `npm run bench -- side-by-side`: Keyward next to the two pass-through proxies people measure
 * gateways against — undici with `pipeline` and node:http with `.pipe()` — and the fake called
 * directly, in one run, one mock provider. JSON and streamed answers, a priced model (`gpt-5`) and
 * one absent from every price list (`mock-gpt-4o-mini`), closed loops of 10 and 50 connections,
 * and the latency each adds at a fixed 500 req/s. Targets take turns, window by window, so that
 * whatever else the machine does falls on all of them alike.
 */

type TargetId = 'direct' | 'undici' | 'pipe' | 'keyward';
type Mode = 'json' | 'stream';

interface Target {
  id: TargetId;
  label: string;
  origin: string;
  path: string;
  authorization: string;
}

const MODELS = [
  ['priced', 'gpt-5'],
  ['unpriced', 'mock-gpt-4o-mini'],
] as const;
const CONNECTIONS = [10, 50] as const;
const WINDOW_MS = 2_500;
const ROUNDS = 3;
const RATE = 500;
const RATE_SECONDS = 4;

const body = (mode: Mode, model: string) =>
  JSON.stringify({
    model,
    messages: [{ role: 'user', content: 'hi' }],
    ...(mode === 'stream' ? { stream: true } : {}),
  });

/** A closed loop: `connections` requests in flight for `windowMs`; answers per second. */
async function closedLoop(pool: Pool, target: Target, payload: string, connections: number, windowMs: number) {
  const end = performance.now() + windowMs;
  let done = 0;
  let failed = 0;
  const worker = async () => {
    while (performance.now() < end) {
      const res = await pool.request({
        method: 'POST',
        path: target.path,
        headers: { authorization: target.authorization, 'content-type': 'application/json' },
        body: payload,
      });
      await res.body.dump();
      if (res.statusCode === 200) done++;
      else failed++;
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: connections }, worker));
  if (failed > 0) throw new Error(`${target.label}: ${failed} answer(s) other than 200`);
  return done / ((performance.now() - started) / 1000);
}

/** Requests sent at a fixed rate, each timed to its last byte; sorted latencies in ms. */
async function paced(pool: Pool, target: Target, payload: string): Promise<number[]> {
  const latencies: number[] = [];
  const total = RATE * RATE_SECONDS;
  const started = performance.now();
  const inFlight: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    const due = started + (i * 1000) / RATE;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
    const sent = performance.now();
    inFlight.push(
      pool
        .request({
          method: 'POST',
          path: target.path,
          headers: { authorization: target.authorization, 'content-type': 'application/json' },
          body: payload,
        })
        .then(async (res) => {
          await res.body.dump();
          if (res.statusCode !== 200) throw new Error(`${target.label}: answered ${res.statusCode}`);
          latencies.push(performance.now() - sent);
        }),
    );
  }
  await Promise.all(inFlight);
  return latencies.sort((a, b) => a - b);
}

async function run(): Promise<void> {
  const fakeKey = generateOpenAiKey('proj');
  const helpers: HelperProcess<unknown>[] = [];
  let app: RunningKeyward | undefined;
  try {
    const fake = await startHelperProcess<{ baseUrl: string }>('fake-server.ts', { BENCH_FAKE_KEY: fakeKey });
    helpers.push(fake);
    const fakeOrigin = new URL(fake.info.baseUrl).origin;
    const proxy = (kind: string) =>
      startHelperProcess<{ url: string }>('bare-proxy.ts', {
        BENCH_UPSTREAM: fakeOrigin,
        BENCH_UPSTREAM_KEY: fakeKey,
        BENCH_PROXY: kind,
      });
    const undiciProxy = await proxy('undici');
    const pipeProxy = await proxy('pipe');
    helpers.push(undiciProxy, pipeProxy);
    app = await startKeyward({ env: { KEYWARD_PROVIDER_OPENAI_BASE_URL: fake.info.baseUrl } });
    const api = new ApiClient(app.url);
    await api.signIn(BENCH_ADMIN.email, BENCH_ADMIN.password);
    await api.request('POST', '/api/admin/api-keys', { provider: 'openai', name: 'bench', key: fakeKey }, 201);
    const token = await api.request<{ token: string }>('POST', '/api/admin/access-tokens', { name: 'bench' }, 201);
    const kw = `Bearer ${token.body.token}`;
    const targets: Target[] = [
      {
        id: 'direct',
        label: 'fake, direct',
        origin: fakeOrigin,
        path: '/v1/chat/completions',
        authorization: `Bearer ${fakeKey}`,
      },
      {
        id: 'undici',
        label: 'undici proxy',
        origin: undiciProxy.info.url,
        path: '/v1/chat/completions',
        authorization: kw,
      },
      {
        id: 'pipe',
        label: 'node:http .pipe() proxy',
        origin: pipeProxy.info.url,
        path: '/v1/chat/completions',
        authorization: kw,
      },
      {
        id: 'keyward',
        label: 'Keyward',
        origin: app.url,
        path: '/proxy/openai/v1/chat/completions',
        authorization: kw,
      },
    ];
    const pools = new Map(targets.map((t) => [t.id, new Pool(t.origin, { connections: 64, pipelining: 1 })]));

    const throughput: { mode: Mode; model: string; connections: number; rates: Record<TargetId, number> }[] = [];
    for (const mode of ['json', 'stream'] as const) {
      for (const [, model] of MODELS) {
        const payload = body(mode, model);
        for (const t of targets) await closedLoop(pools.get(t.id)!, t, payload, 10, 500); // warm-up
        for (const connections of CONNECTIONS) {
          const sums = { direct: 0, undici: 0, pipe: 0, keyward: 0 } as Record<TargetId, number>;
          for (let round = 0; round < ROUNDS; round++) {
            for (const t of targets)
              sums[t.id] += await closedLoop(pools.get(t.id)!, t, payload, connections, WINDOW_MS);
          }
          const rates = Object.fromEntries(targets.map((t) => [t.id, sums[t.id] / ROUNDS])) as Record<TargetId, number>;
          throughput.push({ mode, model, connections, rates });
          log(
            `side-by-side: ${mode} ${model} ${connections} conn: ` +
              targets.map((t) => `${t.id} ${rates[t.id].toFixed(0)}`).join(', ') +
              ` req/s; Keyward/pipe ${(rates.keyward / rates.pipe).toFixed(2)}`,
          );
        }
      }
    }

    const latency: { mode: Mode; results: Record<TargetId, number[]> }[] = [];
    for (const mode of ['json', 'stream'] as const) {
      const payload = body(mode, 'gpt-5');
      const results = {} as Record<TargetId, number[]>;
      for (const t of targets) results[t.id] = await paced(pools.get(t.id)!, t, payload);
      latency.push({ mode, results });
      log(
        `side-by-side: ${mode} at ${RATE} req/s: ` +
          targets
            .map((t) => `${t.id} p50 ${ms(percentile(results[t.id], 50))} p99 ${ms(percentile(results[t.id], 99))}`)
            .join(', '),
      );
    }
    await Promise.all([...pools.values()].map((p) => p.close()));
    writeSection('side-by-side', report(targets, throughput, latency));
  } finally {
    await app?.stop().catch(() => undefined);
    for (const h of helpers) await h.stop();
  }
}

function report(
  targets: Target[],
  throughput: { mode: Mode; model: string; connections: number; rates: Record<TargetId, number> }[],
  latency: { mode: Mode; results: Record<TargetId, number[]> }[],
): string {
  const rows = throughput.map((r) => [
    r.mode,
    r.model,
    String(r.connections),
    ...targets.map((t) => r.rates[t.id].toFixed(0)),
    (r.rates.keyward / r.rates.pipe).toFixed(2),
    (r.rates.keyward / r.rates.undici).toFixed(2),
  ]);
  const added = (results: Record<TargetId, number[]>, id: TargetId, p: number) =>
    percentile(results[id], p) - percentile(results.direct, p);
  const latencyRows = latency.flatMap(({ mode, results }) =>
    targets
      .filter((t) => t.id !== 'direct')
      .map((t) => [
        mode,
        t.label,
        ms(percentile(results[t.id], 50)),
        ms(percentile(results[t.id], 99)),
        `+${added(results, t.id, 50).toFixed(2)}`,
        `+${added(results, t.id, 99).toFixed(2)}`,
      ]),
  );
  return [
    `Keyward beside two pass-through proxies and the fake called directly, one mock provider on loopback.`,
    `Throughput: closed loops of 10 and 50 connections, ${ROUNDS} windows of ${WINDOW_MS / 1000} s per target taken in turn (mean).`,
    '',
    markdownTable(
      ['Body', 'Model', 'Connections', ...targets.map((t) => `${t.label} req/s`), 'Keyward ÷ pipe', 'Keyward ÷ undici'],
      rows,
    ),
    '',
    `Latency at a fixed ${RATE} req/s for ${RATE_SECONDS} s (to the last byte, ms), and what each adds to the direct call:`,
    '',
    markdownTable(['Body', 'Target', 'p50', 'p99', 'Added p50', 'Added p99'], latencyRows),
  ].join('\n');
}

export const sideBySideBenchmark: Benchmark = {
  name: 'side-by-side',
  description: 'Keyward beside an undici and a node:http .pipe() pass-through proxy, priced and unpriced models',
  run,
};
