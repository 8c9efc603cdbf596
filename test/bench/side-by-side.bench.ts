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
const WINDOW_MS = 1_500;
const ROUNDS = 6;
/** Unmeasured load on each target before each body and model, so that the JIT has settled. */
const WARM_UP_MS = 2_000;
const RATE = 500;
/** The fixed-rate run: this many windows of RATE_WINDOW_MS per target, the targets in turn. */
const RATE_WINDOWS = 8;
const RATE_WINDOW_MS = 1_000;

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

/** Requests sent at a fixed rate for `windowMs`, each timed to its last byte; latencies in ms. */
async function paced(pool: Pool, target: Target, payload: string, windowMs: number): Promise<number[]> {
  const latencies: number[] = [];
  let failure: Error | undefined;
  const total = (RATE * windowMs) / 1000;
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
        })
        // Held until all are in (a rejection while the loop still waits would end the process).
        .catch((error: Error) => void (failure ??= error)),
    );
  }
  await Promise.all(inFlight);
  if (failure) throw failure;
  return latencies;
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
        for (const t of targets) await closedLoop(pools.get(t.id)!, t, payload, 50, WARM_UP_MS);
        for (const connections of CONNECTIONS) {
          const windows = { direct: [], undici: [], pipe: [], keyward: [] } as Record<TargetId, number[]>;
          for (let round = 0; round < ROUNDS; round++) {
            for (const t of targets) {
              windows[t.id].push(await closedLoop(pools.get(t.id)!, t, payload, connections, WINDOW_MS));
            }
          }
          // The median window: a stall of the shared machine during one window moves it little.
          const rates = Object.fromEntries(targets.map((t) => [t.id, median(windows[t.id])])) as Record<
            TargetId,
            number
          >;
          throughput.push({ mode, model, connections, rates });
          log(
            `side-by-side: ${mode} ${model} ${connections} conn: ` +
              targets.map((t) => `${t.id} ${rates[t.id].toFixed(0)}`).join(', ') +
              ` req/s; Keyward/pipe ${(rates.keyward / rates.pipe).toFixed(2)}` +
              ` (windows: pipe ${windows.pipe.map((r) => r.toFixed(0)).join(' ')}; keyward ${windows.keyward.map((r) => r.toFixed(0)).join(' ')})`,
          );
        }
      }
    }

    const latency: Latency[] = [];
    for (const mode of ['json', 'stream'] as const) {
      const payload = body(mode, 'gpt-5');
      const results = { direct: [], undici: [], pipe: [], keyward: [] } as Record<TargetId, number[]>;
      const windowP99 = { direct: [], undici: [], pipe: [], keyward: [] } as Record<TargetId, number[]>;
      // Short windows, the targets in turn and in a rotating order: a pause of the machine (this
      // one stalls for 20-30 ms every few seconds, whatever runs) falls on all of them alike.
      for (const t of targets) await paced(pools.get(t.id)!, t, payload, RATE_WINDOW_MS); // warm-up
      for (let w = 0; w < RATE_WINDOWS; w++) {
        for (let i = 0; i < targets.length; i++) {
          const t = targets[(i + w) % targets.length];
          const window = await paced(pools.get(t.id)!, t, payload, RATE_WINDOW_MS);
          results[t.id].push(...window);
          windowP99[t.id].push(
            percentile(
              window.sort((a, b) => a - b),
              99,
            ),
          );
        }
      }
      for (const t of targets) results[t.id].sort((a, b) => a - b);
      latency.push({ mode, results, windowP99 });
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
  latency: Latency[],
): string {
  const rows = throughput.map((r) => [
    r.mode,
    r.model,
    String(r.connections),
    ...targets.map((t) => r.rates[t.id].toFixed(0)),
    (r.rates.keyward / r.rates.pipe).toFixed(2),
    (r.rates.keyward / r.rates.undici).toFixed(2),
  ]);
  const latencyRows = latency.flatMap((l) =>
    targets
      .filter((t) => t.id !== 'direct')
      .map((t) => [
        l.mode,
        t.label,
        ms(percentile(l.results[t.id], 50)),
        ms(percentile(l.results[t.id], 99)),
        ms(median(l.windowP99[t.id])),
        signed(added(l, t.id, 50)),
        signed(added(l, t.id, 99)),
        signed(addedWindowP99(l, t.id)),
      ]),
  );
  return [
    `Keyward beside two pass-through proxies and the fake called directly, one mock provider on loopback.`,
    `Throughput: closed loops of 10 and 50 connections, ${ROUNDS} windows of ${WINDOW_MS / 1000} s per target taken in turn (the median window), after ${WARM_UP_MS / 1000} s of unmeasured load on each target for each body and model.`,
    '',
    markdownTable(
      ['Body', 'Model', 'Connections', ...targets.map((t) => `${t.label} req/s`), 'Keyward ÷ pipe', 'Keyward ÷ undici'],
      rows,
    ),
    '',
    `Latency at a fixed ${RATE} req/s, ${RATE_WINDOWS} windows of ${RATE_WINDOW_MS / 1000} s per target taken in turn (to the last byte, ms), and what each adds to the direct call.`,
    `p50 and p99 are over all of a target's samples; "p99, median window" is the median of its ${RATE_WINDOWS} per-window p99s, which a stall of the machine in one window does not move.`,
    '',
    markdownTable(
      ['Body', 'Target', 'p50', 'p99', 'p99, median window', 'Added p50', 'Added p99', 'Added p99, median window'],
      latencyRows,
    ),
    '',
    verdict(throughput, latency),
  ].join('\n');
}

/** The goal, checked: Keyward at ≥ 0.8 of the pipe proxy on every row, adding < 0.5 ms p50, < 5 ms p99. */
function verdict(
  throughput: { mode: Mode; model: string; connections: number; rates: Record<TargetId, number> }[],
  latency: Latency[],
): string {
  const worst = throughput.reduce((a, b) => (b.rates.keyward / b.rates.pipe < a.rates.keyward / a.rates.pipe ? b : a));
  const ratio = worst.rates.keyward / worst.rates.pipe;
  const lines = [
    `**Goal: Keyward at 0.8 or more of the node:http .pipe() proxy's throughput on every row — ${ratio >= 0.8 ? 'met' : 'not met'}**` +
      ` (lowest: ${ratio.toFixed(2)}, ${worst.mode} ${worst.model} ${worst.connections} connections).`,
  ];
  for (const l of latency) {
    const p50 = added(l, 'keyward', 50);
    const p99 = added(l, 'keyward', 99);
    const windowed = addedWindowP99(l, 'keyward');
    lines.push(
      `**Goal: at ${RATE} req/s (${l.mode}), Keyward adds under 0.5 ms p50 and under 5 ms p99 — ` +
        `${p50 < 0.5 && p99 < 5 ? 'met' : 'not met'} over all samples, ${p50 < 0.5 && windowed < 5 ? 'met' : 'not met'} by the median window**` +
        ` (${signed(p50)} ms p50; p99 ${signed(p99)} ms over all samples, ${signed(windowed)} ms by the median window)` +
        (p99 < 0 ? `; the direct call's own p99 took a stall of the machine, so over all samples says little.` : '.'),
    );
  }
  return lines.join('\n');
}

interface Latency {
  mode: Mode;
  /** Every sample of each target, sorted. */
  results: Record<TargetId, number[]>;
  /** Each target's p99 in each window. */
  windowP99: Record<TargetId, number[]>;
}

const added = (l: Latency, id: TargetId, p: number) => percentile(l.results[id], p) - percentile(l.results.direct, p);
const addedWindowP99 = (l: Latency, id: TargetId) => median(l.windowP99[id]) - median(l.windowP99.direct);

const median = (values: readonly number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

const signed = (ms: number) => (ms < 0 ? `−${(-ms).toFixed(2)}` : `+${ms.toFixed(2)}`);

export const sideBySideBenchmark: Benchmark = {
  name: 'side-by-side',
  description: 'Keyward beside an undici and a node:http .pipe() pass-through proxy, priced and unpriced models',
  run,
};
