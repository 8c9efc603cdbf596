import type { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import * as os from 'node:os';
import { performance } from 'node:perf_hooks';
import { Pool, WebSocket } from 'undici';
import { generateOpenAiKey } from '../fake-providers';
import {
  ApiClient,
  BENCH_ADMIN,
  benchCommand,
  type Benchmark,
  describeMachine,
  type HelperProcess,
  log,
  machineInfo,
  markdownTable,
  percentile,
  processTimes,
  type RunningKeyward,
  startHelperProcess,
  startKeyward,
  writeSection,
} from './support';

/**
 * The gateway's own cost: the same OpenAI chat completion sent to the loopback fake directly, to
 * a minimal Node pass-through proxy (`bare-proxy.ts`) and to Keyward's `/proxy/openai/…`, at
 * fixed request rates and at saturation, JSON and streaming, in one run. Every process is a
 * separate Node process on the same machine: the fake (`fake-server.ts`), the bare proxy,
 * Keyward (with its embedded PostgreSQL) and the load generator (this process).
 *
 * Fixed rates use an open-loop generator written here (requests sent on a fixed schedule, one
 * every 1000/rate ms, over an undici Pool) rather than autocannon's `overallRate`: autocannon
 * sends each connection's per-second quota back to back at the start of every second (500
 * requests in the first ~100 ms, then nothing), records latencies in whole milliseconds and,
 * with a rate set, adds coordinated-omission samples at a 1 ms interval, which makes a
 * sub-millisecond difference unmeasurable. Saturation uses autocannon (closed loop, N
 * connections), with every response's exact time taken from its `response` event.
 */

// ---- parameters -------------------------------------------------------------------------------

const RATES = [500, 1000] as const;
const STREAM_RATES = [500] as const;
const WARMUP_S = 2;
const RATE_S = 8;
const SATURATION_S = 8;
/** Connections of the fixed-rate generator's pool (requests queue in it when all are busy). */
const PACED_CONNECTIONS = 50;
const SATURATION_CONNECTIONS = 64;
/** Measured time is taken in this many windows per target, the targets in turn. */
const ROUNDS = 4;
/** Requests of the unmeasured warm-up before a saturation run (about 1–2 s). */
const SATURATION_WARMUP = 3_000;
const SEQUENTIAL_SAMPLES = 200;
const SEQUENTIAL_WARMUP = 20;
const REQUEST_TIMEOUT_MS = 10_000;
/** What the fake reports for every call; Keyward's usage records must add up to it. */
const USAGE = { input: 12, output: 5 };
const MODEL = 'gpt-5';

const TARGETS = {
  p50AddedMs: 1,
  throughputRatio: 0.7,
};

/** Length of the extra saturation window on Keyward under the CPU profiler, per body kind. */
const PROFILE_S = 3;

// ---- autocannon (no type declarations are installed) ---------------------------------------------

interface AutocannonOptions {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: string;
  connections: number;
  amount: number;
  timeout: number;
  sampleInt: number;
}

interface AutocannonResult {
  duration: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  '2xx': number;
  statusCodeStats: Record<string, { count: number }>;
}

type AutocannonInstance = EventEmitter & PromiseLike<AutocannonResult>;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const autocannon = require('autocannon') as (options: AutocannonOptions) => AutocannonInstance;

// ---- model --------------------------------------------------------------------------------------

type TargetId = 'direct' | 'bare' | 'keyward';

interface Target {
  id: TargetId;
  label: string;
  origin: string;
  path: string;
  headers: Record<string, string>;
}

type Mode = 'json' | 'stream';

interface LoadResult {
  target: TargetId;
  mode: Mode;
  /** Offered req/s, or undefined at saturation. */
  rate?: number;
  /** Sorted latencies of the measured 2xx responses, ms. */
  latencies: number[];
  achieved: number;
  measured: number;
  non2xx: number;
  errors: number;
  /** Fixed rate: p99 of how late the generator sent a request against its schedule, ms. */
  lagP99?: number;
  /** Saturation: CPU time each process used during the measured run, ms, and the run's wall time. */
  cpu?: CpuUse;
}

interface SequentialResult {
  target: TargetId;
  ttfb: number[];
  ttlb: number[];
}

const body = (mode: Mode) =>
  JSON.stringify({
    model: MODEL,
    messages: [{ role: 'user', content: 'hi' }],
    ...(mode === 'stream' ? { stream: true } : {}),
  });

/** 2xx responses Keyward sent to this process (warm-ups included), to check its usage records. */
let keywardAnswered = 0;
/** One-minute load average before the run and after the load (other work on the machine shows here). */
let loadBefore = 0;
let loadAfter = 0;

function countAnswer(target: Target, status: number): void {
  if (target.id === 'keyward' && status >= 200 && status < 300) keywardAnswered++;
}

class LoadError extends Error {}

function assertClean(target: Target, mode: Mode, what: string, r: { non2xx: number; errors: number }, detail = '') {
  if (r.non2xx > 0 || r.errors > 0) {
    throw new LoadError(
      `${target.label}, ${mode}, ${what}: ${r.non2xx} non-2xx answer(s) and ${r.errors} error(s); ` +
        `every answer must be a 2xx for the figures to mean anything. ${detail}`,
    );
  }
}

// ---- CPU accounting (Linux /proc) ----------------------------------------------------------------

type Process = 'generator' | 'fake' | 'bare' | 'keyward' | 'postgres';
/** CPU ms per process, the wall time, and the whole machine's busy cores (any process, kernel). */
type CpuUse = Record<Process, number> & { wallMs: number; machineCores: number };

/** Process ids of the helpers and Keyward; PostgreSQL is whatever runs under Keyward's process. */
const pids: Partial<Record<'fake' | 'bare' | 'keyward', number>> = {};
interface CpuSnapshot {
  generator: number;
  fake: number;
  bare: number;
  keyward: number;
  /** Per process under Keyward's (its PostgreSQL): a backend that ends must not count negative. */
  postgres: Map<number, number>;
  machine: { total: number; idle: number };
  at: number;
}

/** All CPUs' jiffies from /proc/stat: total and idle (idle + iowait). */
function machineTimes(): { total: number; idle: number } {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1, 9).map(Number);
    return { total: fields.reduce((a, b) => a + b, 0), idle: fields[3] + (fields[4] ?? 0) };
  } catch {
    return { total: 0, idle: 0 };
  }
}

function cpuSnapshot(): CpuSnapshot {
  const machine = machineTimes();
  const all = processTimes();
  const own = (pid: number | undefined) => (pid === undefined ? 0 : (all.get(pid)?.ms ?? 0));
  const postgres = new Map<number, number>();
  if (pids.keyward !== undefined) {
    const under = new Set([pids.keyward]);
    // Parents come before their children often but not always: repeat until nothing is added.
    for (let added = true; added;) {
      added = false;
      for (const [pid, p] of all) {
        if (!under.has(pid) && under.has(p.ppid)) {
          under.add(pid);
          postgres.set(pid, p.ms);
          added = true;
        }
      }
    }
  }
  const usage = process.cpuUsage();
  return {
    generator: (usage.user + usage.system) / 1000,
    fake: own(pids.fake),
    bare: own(pids.bare),
    keyward: own(pids.keyward),
    postgres,
    machine,
    at: performance.now(),
  };
}

function cpuShare(after: { total: number; idle: number }, before: { total: number; idle: number }): number {
  const total = after.total - before.total;
  return total > 0 ? ((total - (after.idle - before.idle)) / total) * os.cpus().length : 0;
}

function cpuSince(before: CpuSnapshot): CpuUse {
  const after = cpuSnapshot();
  let postgres = 0;
  for (const [pid, ms] of after.postgres) postgres += ms - (before.postgres.get(pid) ?? 0);
  return {
    generator: after.generator - before.generator,
    fake: after.fake - before.fake,
    bare: after.bare - before.bare,
    keyward: after.keyward - before.keyward,
    postgres,
    wallMs: after.at - before.at,
    machineCores: cpuShare(after.machine, before.machine),
  };
}

// ---- load generators ----------------------------------------------------------------------------

async function drain(stream: AsyncIterable<Buffer>): Promise<string> {
  let text = '';
  for await (const chunk of stream) if (text.length < 2000) text += chunk.toString('utf8');
  return text;
}

/** What one measured window gave; windows of the same target are added up into a LoadResult. */
interface Window {
  latencies: number[];
  lags: number[];
  elapsedMs: number;
  non2xx: number;
  errors: number;
  detail: string;
  cpu?: CpuUse;
}

function combine(target: Target, mode: Mode, windows: Window[], rate?: number): LoadResult {
  const latencies = windows.flatMap((w) => w.latencies).sort((a, b) => a - b);
  const lags = windows.flatMap((w) => w.lags).sort((a, b) => a - b);
  const elapsed = windows.reduce((sum, w) => sum + w.elapsedMs, 0);
  const result: LoadResult = {
    target: target.id,
    mode,
    rate,
    latencies,
    achieved: latencies.length / (elapsed / 1000),
    measured: latencies.length,
    non2xx: windows.reduce((sum, w) => sum + w.non2xx, 0),
    errors: windows.reduce((sum, w) => sum + w.errors, 0),
    lagP99: lags.length > 0 ? percentile(lags, 99) : undefined,
  };
  const cpus = windows.flatMap((w) => (w.cpu ? [w.cpu] : []));
  if (cpus.length > 0) {
    const add = (f: (c: CpuUse) => number) => cpus.reduce((sum, c) => sum + f(c), 0);
    const wallMs = add((c) => c.wallMs);
    result.cpu = {
      generator: add((c) => c.generator),
      fake: add((c) => c.fake),
      bare: add((c) => c.bare),
      keyward: add((c) => c.keyward),
      postgres: add((c) => c.postgres),
      wallMs,
      machineCores: add((c) => c.machineCores * c.wallMs) / wallMs,
    };
  }
  const detail = windows.map((w) => w.detail).find((d) => d) ?? '';
  assertClean(target, mode, rate ? `${rate} req/s` : 'saturation', result, detail);
  return result;
}

/**
 * Open loop for `seconds`: request i leaves at t0 + i·(1000/rate) ms whatever happened to the
 * earlier ones; its latency runs from that send to the last byte of the answer (queueing in the
 * pool included).
 */
async function paced(target: Target, pool: Pool, mode: Mode, rate: number, seconds: number): Promise<Window> {
  const payload = body(mode);
  const interval = 1000 / rate;
  const total = Math.round(rate * seconds);
  const window: Window = { latencies: [], lags: [], elapsedMs: 0, non2xx: 0, errors: 0, detail: '' };
  let sent = 0;
  let settled = 0;
  const t0 = performance.now() + 5;
  await new Promise<void>((resolve) => {
    const send = () => {
      const started = performance.now();
      pool
        .request({
          method: 'POST',
          path: target.path,
          headers: target.headers,
          body: payload,
          headersTimeout: REQUEST_TIMEOUT_MS,
          bodyTimeout: REQUEST_TIMEOUT_MS,
        })
        .then(async (res) => {
          const text = await drain(res.body);
          const took = performance.now() - started;
          countAnswer(target, res.statusCode);
          if (res.statusCode < 200 || res.statusCode >= 300) {
            window.non2xx++;
            window.detail ||= `First: ${res.statusCode} ${text.slice(0, 300)}`;
          } else window.latencies.push(took);
        })
        .catch((error: unknown) => {
          window.errors++;
          window.detail ||= `First error: ${(error as Error).message}`;
        })
        .finally(() => {
          if (++settled === total) {
            window.elapsedMs = performance.now() - t0;
            resolve();
          }
        });
    };
    const tick = () => {
      const now = performance.now();
      while (sent < total && t0 + sent * interval <= now) {
        window.lags.push(now - (t0 + sent * interval));
        sent++;
        send();
      }
      if (sent < total) setTimeout(tick, Math.max(0, t0 + sent * interval - performance.now()));
    };
    setTimeout(tick, 5);
  });
  return window;
}

/**
 * One fixed rate on every target: WARMUP_S unmeasured on each, then RATE_S measured on each in
 * ROUNDS windows taken in turn (direct, bare, Keyward, direct, …), so that other work on the
 * machine falls on all three alike. Each target keeps its pool (and connections) throughout.
 */
async function fixedRateScenario(targets: Target[], mode: Mode, rate: number): Promise<LoadResult[]> {
  const pools = targets.map(
    (t) => new Pool(t.origin, { connections: PACED_CONNECTIONS, pipelining: 1, keepAliveTimeout: 30_000 }),
  );
  try {
    for (const [i, target] of targets.entries())
      combine(target, mode, [await paced(target, pools[i], mode, rate, WARMUP_S)], rate);
    const windows: Window[][] = targets.map(() => []);
    for (let round = 0; round < ROUNDS; round++) {
      for (const [i, target] of targets.entries()) {
        windows[i].push(await paced(target, pools[i], mode, rate, RATE_S / ROUNDS));
      }
    }
    return targets.map((target, i) => combine(target, mode, windows[i], rate));
  } finally {
    await Promise.all(pools.map((p) => p.close()));
  }
}

/**
 * Closed loop: autocannon keeps SATURATION_CONNECTIONS requests in flight until `amount` have been
 * answered. A fixed count rather than a duration: at the end of a timed run autocannon drops its
 * connections with requests in flight, and Keyward takes a client that leaves before the
 * provider answered for an upstream timeout and rests the key for 5 s (the run after it would
 * get 503s). With a count, every connection ends after an answer.
 */
async function closedLoop(target: Target, mode: Mode, amount: number): Promise<Window> {
  const latencies: number[] = [];
  const before = cpuSnapshot();
  const started = performance.now();
  let last = started;
  let answered = 0;
  let cpu: CpuUse | undefined;
  const instance = autocannon({
    url: target.origin + target.path,
    method: 'POST',
    headers: { ...target.headers, 'content-type': 'application/json' },
    body: body(mode),
    connections: SATURATION_CONNECTIONS,
    amount,
    timeout: REQUEST_TIMEOUT_MS / 1000,
    // How often it checks whether it is done (and samples req/s, unused here).
    sampleInt: 100,
  });
  instance.on('response', (_client: unknown, status: number | string, _bytes: number, took: number) => {
    last = performance.now();
    const code = Number(status);
    countAnswer(target, code);
    if (code >= 200 && code < 300) latencies.push(took);
    // CPU up to the last answer, not up to when autocannon notices it is done.
    if (++answered === amount) cpu = cpuSince(before);
  });
  const result = await instance;
  return {
    latencies,
    lags: [],
    elapsedMs: last - started,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    detail: `Status codes: ${JSON.stringify(result.statusCodeStats)}`,
    cpu: cpu ?? cpuSince(before),
  };
}

/**
 * Saturation on every target: a warm-up of SATURATION_WARMUP requests on each, then ROUNDS windows
 * each, in turn, of as many requests as the warm-up rate does in SATURATION_S / ROUNDS.
 */
async function saturationScenario(targets: Target[], mode: Mode): Promise<LoadResult[]> {
  const amounts: number[] = [];
  for (const target of targets) {
    const warm = combine(target, mode, [await closedLoop(target, mode, SATURATION_WARMUP)]);
    amounts.push(Math.min(100_000, Math.max(1_000, Math.round((warm.achieved * SATURATION_S) / ROUNDS))));
  }
  const windows: Window[][] = targets.map(() => []);
  for (let round = 0; round < ROUNDS; round++) {
    for (const [i, target] of targets.entries()) windows[i].push(await closedLoop(target, mode, amounts[i]));
  }
  return targets.map((target, i) => combine(target, mode, windows[i]));
}

/**
 * One streaming request at a time, the targets in turn: time to the first body byte and to the
 * last, ms.
 */
async function sequentialStreams(targets: Target[]): Promise<SequentialResult[]> {
  const pools = targets.map((t) => new Pool(t.origin, { connections: 1, pipelining: 1 }));
  const payload = body('stream');
  const results: SequentialResult[] = targets.map((t) => ({ target: t.id, ttfb: [], ttlb: [] }));
  try {
    for (let i = 0; i < SEQUENTIAL_WARMUP + SEQUENTIAL_SAMPLES; i++) {
      for (const [t, target] of targets.entries()) {
        const started = performance.now();
        const res = await pools[t].request({
          method: 'POST',
          path: target.path,
          headers: target.headers,
          body: payload,
          headersTimeout: REQUEST_TIMEOUT_MS,
          bodyTimeout: REQUEST_TIMEOUT_MS,
        });
        let first = 0;
        let text = '';
        for await (const chunk of res.body as AsyncIterable<Buffer>) {
          first ||= performance.now() - started;
          text += chunk.toString('utf8');
        }
        const last = performance.now() - started;
        countAnswer(target, res.statusCode);
        if (res.statusCode !== 200 || !text.includes('data: [DONE]')) {
          throw new LoadError(`${target.label}: streaming answer ${res.statusCode}: ${text.slice(0, 300)}`);
        }
        if (i >= SEQUENTIAL_WARMUP) {
          results[t].ttfb.push(first);
          results[t].ttlb.push(last);
        }
      }
    }
  } finally {
    await Promise.all(pools.map((p) => p.close()));
  }
  for (const r of results) {
    r.ttfb.sort((a, b) => a - b);
    r.ttlb.sort((a, b) => a - b);
  }
  return results;
}

/** One request of each kind, checked by content, before any load: the path measured is the real one. */
async function checkTarget(target: Target): Promise<void> {
  const pool = new Pool(target.origin, { connections: 1 });
  try {
    for (const mode of ['json', 'stream'] as const) {
      const res = await pool.request({ method: 'POST', path: target.path, headers: target.headers, body: body(mode) });
      const text = await res.body.text();
      countAnswer(target, res.statusCode);
      const problem =
        res.statusCode !== 200
          ? `status ${res.statusCode}`
          : mode === 'json' && !(JSON.parse(text) as { usage?: { prompt_tokens?: number } }).usage?.prompt_tokens
            ? 'no usage in the JSON answer'
            : mode === 'stream' && !text.endsWith('data: [DONE]\n\n')
              ? 'the stream does not end with [DONE]'
              : mode === 'stream' && text.includes('"prompt_tokens"')
                ? 'a usage chunk the client did not ask for'
                : target.id === 'keyward' && res.headers['x-keyward-attempts'] !== '1'
                  ? 'no x-keyward-attempts: 1 header'
                  : undefined;
      if (problem) throw new LoadError(`${target.label}, ${mode}: ${problem}: ${text.slice(0, 300)}`);
    }
  } finally {
    await pool.close();
  }
}

// ---- the run -------------------------------------------------------------------------------------

interface UsageMetric {
  period: string;
  requests: number;
  errors: number;
  inputTokens: number;
  outputTokens: number;
}

async function runGateway(): Promise<void> {
  const began = performance.now();
  const fakeKey = generateOpenAiKey('proj');
  let fake: HelperProcess<{ baseUrl: string }> | undefined;
  let bare: HelperProcess<{ url: string }> | undefined;
  let app: RunningKeyward | undefined;
  loadBefore = os.loadavg()[0];
  try {
    fake = await startHelperProcess<{ baseUrl: string }>('fake-server.ts', {
      BENCH_FAKE_KEY: fakeKey,
      BENCH_FAKE_USAGE_INPUT: String(USAGE.input),
      BENCH_FAKE_USAGE_OUTPUT: String(USAGE.output),
    });
    const fakeOrigin = new URL(fake.info.baseUrl).origin;
    bare = await startHelperProcess<{ url: string }>('bare-proxy.ts', {
      BENCH_UPSTREAM: fakeOrigin,
      BENCH_UPSTREAM_KEY: fakeKey,
    });
    app = await startKeyward({
      env: { KEYWARD_PROVIDER_OPENAI_BASE_URL: fake.info.baseUrl },
      // For the profile taken after the measured windows; idle (no session) until then.
      nodeArgs: ['--inspect=127.0.0.1:0'],
    });
    pids.fake = fake.child.pid;
    pids.bare = bare.child.pid;
    pids.keyward = app.child.pid;
    log(
      `gateway: fake at ${fake.info.baseUrl}, bare proxy at ${bare.info.url}, Keyward at ${app.url} ` +
        `(${app.databaseMode} PostgreSQL, ready in ${(app.readyAfterMs / 1000).toFixed(1)} s)`,
    );
    if (app.databaseMode !== 'embedded') throw new Error(`expected the embedded PostgreSQL, got ${app.databaseMode}`);

    const api = new ApiClient(app.url);
    await api.signIn(BENCH_ADMIN.email, BENCH_ADMIN.password);
    const key = await api.request<{ id: string }>(
      'POST',
      '/api/admin/api-keys',
      { provider: 'openai', name: 'bench-gateway', key: fakeKey },
      201,
    );
    const token = await api.request<{ token: string }>('POST', '/api/admin/access-tokens', { name: 'bench' }, 201);
    const authorization = `Bearer ${token.body.token}`;
    const headers = (auth: string) => ({ authorization: auth, 'content-type': 'application/json' });
    const targets: Target[] = [
      {
        id: 'direct',
        label: 'fake, direct',
        origin: fakeOrigin,
        path: '/v1/chat/completions',
        headers: headers(`Bearer ${fakeKey}`),
      },
      {
        id: 'bare',
        label: 'bare Node proxy',
        origin: bare.info.url,
        path: '/v1/chat/completions',
        // Same header size as Keyward's; the proxy puts the provider key in its place.
        headers: headers(authorization),
      },
      {
        id: 'keyward',
        label: 'Keyward gateway',
        origin: app.url,
        path: '/proxy/openai/v1/chat/completions',
        headers: headers(authorization),
      },
    ];
    for (const target of targets) await checkTarget(target);

    const fixed: LoadResult[] = [];
    const saturated: LoadResult[] = [];
    const profiles = {} as Record<Mode, Breakdown>;
    const step = (r: LoadResult, target: Target) =>
      log(
        `gateway: ${r.mode.padEnd(6)} ${(r.rate ? `${r.rate} req/s` : 'saturation').padEnd(11)} ${target.label.padEnd(16)} ` +
          `${r.achieved.toFixed(0).padStart(6)} req/s   p50 ${ms2(pct(r, 50)).padStart(6)}   p90 ${ms2(pct(r, 90)).padStart(6)}   ` +
          `p99 ${ms2(pct(r, 99)).padStart(7)} ms${r.lagP99 !== undefined ? `   (send lag p99 ${ms2(r.lagP99)} ms)` : ''}` +
          (r.cpu ? `   CPU µs/request: ${cpuLine(r)}` : ''),
      );
    const scenarios: [Mode, readonly number[]][] = [
      ['json', RATES],
      ['stream', STREAM_RATES],
    ];
    for (const [mode, rates] of scenarios) {
      for (const rate of rates) {
        for (const [i, r] of (await fixedRateScenario(targets, mode, rate)).entries()) {
          fixed.push(r);
          step(r, targets[i]);
        }
      }
      for (const [i, r] of (await saturationScenario(targets, mode)).entries()) {
        saturated.push(r);
        step(r, targets[i]);
      }
      // One more saturation window on Keyward, under the CPU profiler (not measured).
      const keyward = targets.find((t) => t.id === 'keyward')!;
      const rate = saturated.find((r) => r.mode === mode && r.target === 'keyward')!.achieved;
      const { result, profile } = await profileKeyward(app, () =>
        closedLoop(keyward, mode, Math.max(1_000, Math.round(rate * PROFILE_S))),
      );
      combine(keyward, mode, [result]);
      profiles[mode] = breakdown(profile);
      log(`gateway: ${mode} profile of Keyward: ${describeBreakdown(profiles[mode])}`);
    }
    const sequential = await sequentialStreams(targets);
    for (const [i, r] of sequential.entries()) {
      log(
        `gateway: one stream at a time, ${targets[i].label.padEnd(16)} first byte median ${ms2(median(r.ttfb))} p99 ${ms2(percentile(r.ttfb, 99))}   ` +
          `last byte median ${ms2(median(r.ttlb))} p99 ${ms2(percentile(r.ttlb, 99))} ms`,
      );
    }

    loadAfter = os.loadavg()[0];
    // Keyward writes usage in batches (every 200 ms): wait until its count stops moving.
    let usage = await keyUsage(api, key.body.id);
    for (let i = 0; i < 20; i++) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      const next = await keyUsage(api, key.body.id);
      const settled = next.requests === usage.requests && next.requests >= keywardAnswered;
      usage = next;
      if (settled) break;
    }
    log(
      `gateway: Keyward's usage records: ${usage.requests} requests (${usage.errors} failed), ` +
        `${usage.inputTokens} input + ${usage.outputTokens} output tokens; this process got ${keywardAnswered} 2xx answers from it`,
    );
    const problems = app.problems();
    log(`gateway: the app logged ${problems.length} warning/error line(s)`);
    for (const line of problems.slice(0, 5)) log(`  ${line.slice(0, 400)}`);
    if (usage.requests !== keywardAnswered || usage.errors !== 0) {
      throw new Error(
        `Keyward recorded ${usage.requests} requests (${usage.errors} failed), expected ${keywardAnswered} successful ones`,
      );
    }
    const code = await app.stop();
    app = undefined;
    if (code !== 0) throw new Error(`Keyward exited with ${code} after SIGTERM`);

    const totalSeconds = (performance.now() - began) / 1000;
    writeSection('gateway', report(fixed, saturated, sequential, profiles, usage, totalSeconds));
  } catch (error) {
    for (const line of app?.problems().slice(-10) ?? []) log(`  Keyward: ${line.slice(0, 400)}`);
    throw error;
  } finally {
    await app?.stop().catch(() => undefined);
    await bare?.stop();
    await fake?.stop();
  }
}

async function keyUsage(api: ApiClient, id: string): Promise<Omit<UsageMetric, 'period'>> {
  const res = await api.request<{ history: { daily: UsageMetric[] } }>('GET', `/api/admin/api-keys/${id}/usage`);
  const total = { requests: 0, errors: 0, inputTokens: 0, outputTokens: 0 };
  for (const day of res.body.history.daily) {
    total.requests += day.requests;
    total.errors += day.errors;
    total.inputTokens += day.inputTokens;
    total.outputTokens += day.outputTokens;
  }
  return total;
}

// ---- statistics and report ----------------------------------------------------------------------

const pct = (r: LoadResult, p: number) => percentile(r.latencies, p);
const median = (sorted: readonly number[]) => percentile(sorted, 50);
const ms2 = (value: number) => value.toFixed(2);
const signed = (value: number) => value.toFixed(2);
const LABELS: Record<TargetId, string> = {
  direct: 'fake, direct',
  bare: 'bare Node proxy',
  keyward: 'Keyward',
};

function report(
  fixed: LoadResult[],
  saturated: LoadResult[],
  sequential: SequentialResult[],
  profiles: Record<Mode, Breakdown>,
  usage: Omit<UsageMetric, 'period'>,
  totalSeconds: number,
): string {
  const info = machineInfo();
  const find = (list: LoadResult[], mode: Mode, target: TargetId, rate?: number) =>
    list.find((r) => r.mode === mode && r.target === target && r.rate === rate)!;

  const fixedTable = markdownTable(
    ['Body', 'Offered req/s', 'Target', 'Achieved req/s', 'p50', 'p90', 'p99', 'Added p50', 'Added p99'],
    fixed.map((r) => {
      const direct = find(fixed, r.mode, 'direct', r.rate);
      const added = r.target === 'direct';
      return [
        r.mode === 'json' ? 'JSON' : 'stream',
        String(r.rate),
        LABELS[r.target],
        r.achieved.toFixed(0),
        ms2(pct(r, 50)),
        ms2(pct(r, 90)),
        ms2(pct(r, 99)),
        added ? '' : signed(pct(r, 50) - pct(direct, 50)),
        added ? '' : signed(pct(r, 99) - pct(direct, 99)),
      ];
    }),
  );
  const saturationTable = markdownTable(
    ['Body', 'Target', 'req/s', 'p50', 'p90', 'p99', 'vs bare proxy'],
    saturated.map((r) => {
      const bare = find(saturated, r.mode, 'bare');
      return [
        r.mode === 'json' ? 'JSON' : 'stream',
        LABELS[r.target],
        r.achieved.toFixed(0),
        ms2(pct(r, 50)),
        ms2(pct(r, 90)),
        ms2(pct(r, 99)),
        r.target === 'direct' ? '' : `${((r.achieved / bare.achieved) * 100).toFixed(0)} %`,
      ];
    }),
  );
  const cpuTable = markdownTable(
    [
      'Body',
      'Target',
      'req/s',
      'Generator',
      'Fake',
      'Proxy process',
      'Its PostgreSQL',
      'All',
      'Proxy process, cores',
      'All, cores',
      'Machine, cores',
    ],
    saturated.map((r) => {
      const c = r.cpu!;
      const us = (value: number) => perRequest(r, value).toFixed(0);
      const proxy = r.target === 'bare' ? c.bare : r.target === 'keyward' ? c.keyward : 0;
      return [
        r.mode === 'json' ? 'JSON' : 'stream',
        LABELS[r.target],
        r.achieved.toFixed(0),
        us(c.generator),
        us(c.fake),
        r.target === 'direct' ? '' : us(proxy),
        r.target === 'keyward' ? us(c.postgres) : '',
        us(allCpu(c)),
        r.target === 'direct' ? '' : (proxy / c.wallMs).toFixed(2),
        (allCpu(c) / c.wallMs).toFixed(2),
        c.machineCores.toFixed(2),
      ];
    }),
  );
  const directSeq = sequential.find((s) => s.target === 'direct')!;
  const sequentialTable = markdownTable(
    [
      'Target',
      'First byte median',
      'First byte p99',
      'Last byte median',
      'Last byte p99',
      'Added first byte',
      'Added last byte',
    ],
    sequential.map((s) => [
      LABELS[s.target],
      ms2(median(s.ttfb)),
      ms2(percentile(s.ttfb, 99)),
      ms2(median(s.ttlb)),
      ms2(percentile(s.ttlb, 99)),
      s.target === 'direct' ? '' : signed(median(s.ttfb) - median(directSeq.ttfb)),
      s.target === 'direct' ? '' : signed(median(s.ttlb) - median(directSeq.ttlb)),
    ]),
  );

  // Verdict.
  const added = fixed
    .filter((r) => r.target === 'keyward')
    .map((r) => ({
      r,
      p50: pct(r, 50) - pct(find(fixed, r.mode, 'direct', r.rate), 50),
      p99: pct(r, 99) - pct(find(fixed, r.mode, 'direct', r.rate), 99),
      bareP50: pct(find(fixed, r.mode, 'bare', r.rate), 50) - pct(find(fixed, r.mode, 'direct', r.rate), 50),
      bareP99: pct(find(fixed, r.mode, 'bare', r.rate), 99) - pct(find(fixed, r.mode, 'direct', r.rate), 99),
    }));
  const ratios = (['json', 'stream'] as const).map((mode) => ({
    mode,
    keyward: find(saturated, mode, 'keyward'),
    bare: find(saturated, mode, 'bare'),
    ratio: find(saturated, mode, 'keyward').achieved / find(saturated, mode, 'bare').achieved,
  }));
  const latencyMet = added.every((a) => a.p50 < TARGETS.p50AddedMs);
  const throughputMet = ratios.every((r) => r.ratio >= TARGETS.throughputRatio);
  const what = (r: LoadResult) => `${r.mode === 'json' ? 'JSON' : 'streaming'} at ${r.rate} req/s`;
  const latencyVerdict =
    `**Added p50 under ${TARGETS.p50AddedMs} ms: ${latencyMet ? 'met' : 'NOT met'}.** Keyward minus the direct call: ` +
    added.map((a) => `${what(a.r)} ${signed(a.p50)} ms at p50 and ${signed(a.p99)} ms at p99`).join('; ') +
    ` (the bare proxy adds ${added.map((a) => `${signed(a.bareP50)}`).join(', ')} ms at p50 in the same runs). ` +
    `At p99 both proxies add far more than at p50 — the bare proxy ${added.map((a) => signed(a.bareP99)).join(', ')} ms — ` +
    `as with four processes and PostgreSQL on ${info.cores} shared cores a request waits whenever another process holds ` +
    `the core; the p99 figures of all three targets move by several ms from one run to the next.`;
  const throughputVerdict =
    `**Throughput at least ${TARGETS.throughputRatio * 100} % of the bare proxy: ${throughputMet ? 'met' : 'NOT met'}.** ` +
    ratios
      .map(
        (r) =>
          `${r.mode === 'json' ? 'JSON' : 'streaming'}: ${r.keyward.achieved.toFixed(0)} vs ${r.bare.achieved.toFixed(0)} req/s, ` +
          `**${(r.ratio * 100).toFixed(0)} %**`,
      )
      .join('; ') +
    '.';
  const usageLine =
    `Keyward recorded **${usage.requests.toLocaleString('en-US')} requests** on the key (${usage.errors} failed, ` +
    `${usage.inputTokens.toLocaleString('en-US')} input and ${usage.outputTokens.toLocaleString('en-US')} output tokens, ` +
    `${USAGE.input} + ${USAGE.output} per call) for ${keywardAnswered.toLocaleString('en-US')} 2xx answers received by the load generator ` +
    `(warm-ups and checks included). Usage was counted, not skipped: the measured path is the real one.`;

  const section = `## Gateway overhead (\`gateway\`)

- Command: \`${benchCommand()}\` (measured ${info.date}, whole run ${totalSeconds.toFixed(0)} s)
- Machine: ${describeMachine(info)}. **${info.cores} cores shared by four processes**: the load generator
  (the benchmark), the fake OpenAI (\`test/bench/fake-server.ts\`), the bare proxy (\`test/bench/bare-proxy.ts\`) and
  Keyward (\`node dist/src/main.js\`, \`LOG_LEVEL=warn\`) with its embedded PostgreSQL, each a process of its own, all on 127.0.0.1.
  Only one of the three targets is loaded at a time; the other two are idle. The machine is not reserved for the
  benchmark (one-minute load average ${loadBefore.toFixed(2)} before the run, ${loadAfter.toFixed(2)} at the end of the load): every
  measured time is taken in ${ROUNDS} windows per target, the three targets in turn (direct, bare, Keyward, direct, …), so
  that other work on the machine falls on all three alike.
- Request: \`POST …/chat/completions\` \`${body('json')}\` (streaming: the same with \`"stream":true\`); the fake answers
  with fixed usage (${USAGE.input} in, ${USAGE.output} out) and writes stream chunks back to back (\`chunkDelayMs: 0\`), so that
  a stream's time is transport and proxy work only.
- Targets: **fake, direct** (\`/v1/chat/completions\` with the provider key); **bare Node proxy** — \`node:http\` server
  forwarding method, path, headers and body over an undici Pool (256 connections, as Keyward's) with the provider key put
  in \`Authorization\`, piping status, headers and body back: no authentication, key selection or accounting; **Keyward**
  — \`/proxy/openai/v1/chat/completions\` with an access token (\`kw_…\`), i.e. token lookup, key choice and decryption
  from caches, forwarding, usage tap and a usage record written in batches to PostgreSQL. For streams Keyward adds
  \`stream_options.include_usage\` to the request (OpenAI only reports usage in a stream when asked) and removes the
  extra usage chunk from the answer, so it parses the SSE events it relays: real gateway work the bare proxy does not do.
- Fixed rates: open loop, one request every 1000/rate ms whatever the earlier ones did, over an undici Pool of
  ${PACED_CONNECTIONS} connections per target, ${WARMUP_S} s unmeasured warm-up on each, then ${RATE_S} s measured on each in
  ${ROUNDS} windows of ${RATE_S / ROUNDS} s; latency from sending to the last byte of the answer. (Not autocannon's \`overallRate\`: it sends each second's quota in a burst at the start of the second and
  records whole milliseconds.) The generator sent 99 % of its requests within ${ms2(Math.max(...fixed.map((r) => r.lagP99 ?? 0)))} ms of their schedule.
- Saturation: autocannon, ${SATURATION_CONNECTIONS} connections, closed loop: a warm-up of ${SATURATION_WARMUP.toLocaleString('en-US')} requests on each
  target, then ${ROUNDS} windows on each of as many requests as the warm-up rate does in ${SATURATION_S / ROUNDS} s (a count, not a
  duration, so that no window ends with requests cut off); req/s = answers / time to the last answer, over the
  windows; percentiles from every response's exact time (autocannon's own histogram has whole milliseconds).
- One stream at a time: ${SEQUENTIAL_WARMUP} warm-up then ${SEQUENTIAL_SAMPLES} streaming requests per target, one at a time, the targets
  in turn, over one keep-alive connection each; first byte = first body chunk (the first SSE event), last byte = end of
  the answer.
- "Added" = the target minus the direct call in the same scenario. Every answer in every run was a 2xx (any other
  status or error fails the benchmark). All of it in this one run.

Fixed request rate, latency in ms:

${fixedTable}

Saturation (${SATURATION_CONNECTIONS} connections), latency in ms:

${saturationTable}

CPU time per answered request in the saturation runs, µs (user + system from \`/proc/<pid>/stat\`, 10 ms ticks; "All"
includes the idle processes), and how many of the ${info.cores} cores the proxy process and these processes kept busy
(CPU time / wall time), next to the whole machine's busy cores from \`/proc/stat\` (the kernel and other work included):

${cpuTable}
${interference(saturated)}
One streaming request at a time (${SEQUENTIAL_SAMPLES} samples), ms:

${sequentialTable}

${usageLine}

${latencyVerdict}

${throughputVerdict}
${latencyMet && throughputMet ? '' : `\n${limits(saturated, info.cores, profiles)}\n`}
${profileSection(profiles)}
`;
  log();
  log(fixedTable);
  log();
  log(saturationTable);
  log();
  log(cpuTable);
  log();
  log(sequentialTable);
  log();
  log(latencyVerdict);
  log(throughputVerdict);
  return section;
}

/** A warning when work outside the benchmark took a noticeable share of the cores in a saturation run. */
function interference(saturated: LoadResult[]): string {
  const other = saturated
    .map((r) => ({ r, cores: r.cpu!.machineCores - allCpu(r.cpu!) / r.cpu!.wallMs }))
    .filter((o) => o.cores >= 0.25);
  if (other.length === 0) return '';
  return (
    `\nOther work on the machine (not these processes) took ` +
    other
      .map(
        (o) => `${o.cores.toFixed(2)} cores during ${o.r.mode === 'json' ? 'JSON' : 'stream'}, ${LABELS[o.r.target]}`,
      )
      .join('; ') +
    `: those saturation figures are lower than on a quiet machine, and their ratios less certain.\n`
  );
}

const allCpu = (c: CpuUse) => c.generator + c.fake + c.bare + c.keyward + c.postgres;
const perRequest = (r: LoadResult, cpuMs: number) => (cpuMs * 1000) / r.measured;
const cpuLine = (r: LoadResult) =>
  (['generator', 'fake', 'bare', 'keyward', 'postgres'] as const)
    .map((p) => `${p} ${perRequest(r, r.cpu![p]).toFixed(0)}`)
    .join(', ');

/** What holds Keyward back when a target is missed, from this run's CPU accounting and profile. */
function limits(saturated: LoadResult[], cores: number, profiles: Record<Mode, Breakdown>): string {
  const of = (mode: Mode, target: TargetId) => saturated.find((r) => r.mode === mode && r.target === target)!;
  const modes = (['json', 'stream'] as const).map((mode) => {
    const k = of(mode, 'keyward');
    const b = of(mode, 'bare');
    return {
      mode,
      keyward: perRequest(k, k.cpu!.keyward),
      keywardCores: k.cpu!.keyward / k.cpu!.wallMs,
      machine: k.cpu!.machineCores,
      postgres: perRequest(k, k.cpu!.postgres),
      bare: perRequest(b, b.cpu!.bare),
      bareCores: b.cpu!.bare / b.cpu!.wallMs,
      bareMachine: b.cpu!.machineCores,
      goal: b.achieved * TARGETS.throughputRatio,
    };
  });
  const both = (f: (m: (typeof modes)[number]) => string) => modes.map(f).join(' / ');
  const us = (value: number) => value.toFixed(0);
  const cores2 = (value: number) => value.toFixed(2);
  const oneCore = modes.every((m) => m.keywardCores >= 0.85);
  const bottleneck = oneCore
    ? `A Node process runs its JavaScript on one thread, and Keyward's was close to a full core: its req/s is about ` +
      `one second divided by its CPU time per request.`
    : `Keyward's process stayed below a full core while the machine had ${both((m) => cores2(m.machine))} of its ${cores} ` +
      `cores busy: the processes competed for the cores.`;
  const largest = (mode: Mode) =>
    profiles[mode].kinds
      .slice(0, 3)
      .map(([k, v]) => `${k} ${share(v)}`)
      .join(', ');
  return `**What limits it: Keyward's CPU time per request.** Per request Keyward's process spent **${both((m) => us(m.keyward))} µs**
of CPU (JSON / streaming) against ${both((m) => us(m.bare))} µs for the bare proxy (${both((m) => `${(m.keyward / m.bare).toFixed(1)}×`)}),
and kept ${both((m) => cores2(m.keywardCores))} of a core busy (the bare proxy ${both((m) => cores2(m.bareCores))}; the whole machine
${both((m) => cores2(m.machine))} against ${both((m) => cores2(m.bareMachine))} of its ${cores} cores). ${bottleneck} Its PostgreSQL adds
${both((m) => us(m.postgres))} µs per request for the usage records. To reach 70 % of the bare proxy here
(${both((m) => us(m.goal))} req/s) on one core, Keyward would have to spend at most about ${both((m) => us(1e6 / m.goal))} µs per
request instead of ${both((m) => us(m.keyward))}, or use more than one core (several instances behind one address,
docs/architecture.md "Many instances"), which this 2-core machine, with the fake and the load generator on it, cannot show.
The largest shares of Keyward's CPU in the profile below: JSON — ${largest('json')}; streaming — ${largest('stream')}.`;
}

// ---- CPU profile of Keyward (V8's sampling profiler, through its inspector) -----------------

interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: CpuProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Runs `work` while Keyward's CPU is profiled through the inspector it was started with. */
async function profileKeyward<T>(
  app: RunningKeyward,
  work: () => Promise<T>,
): Promise<{ result: T; profile: CpuProfile }> {
  const url = /ws:\/\/127\.0\.0\.1:\d+\/[\w-]+/.exec(app.output())?.[0];
  if (!url) throw new Error('Keyward did not print its inspector address');
  const ws = new WebSocket(url);
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener('open', () => resolve(), { once: true });
    ws.addEventListener('error', () => reject(new Error(`cannot reach Keyward's inspector at ${url}`)), { once: true });
  });
  let next = 0;
  const waiting = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  ws.addEventListener('message', (event) => {
    const message = JSON.parse(String(event.data)) as { id?: number; result?: unknown; error?: { message: string } };
    const pending = message.id === undefined ? undefined : waiting.get(message.id);
    if (!pending) return;
    waiting.delete(message.id!);
    if (message.error) pending.reject(new Error(message.error.message));
    else pending.resolve(message.result);
  });
  const call = <R>(method: string): Promise<R> =>
    new Promise<R>((resolve, reject) => {
      const id = ++next;
      const timer = setTimeout(() => reject(new Error(`inspector: no answer to ${method}`)), 30_000);
      waiting.set(id, {
        resolve: (value) => {
          clearTimeout(timer);
          resolve(value as R);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      ws.send(JSON.stringify({ id, method }));
    });
  try {
    await call('Profiler.enable');
    await call('Profiler.start');
    const result = await work();
    const { profile } = await call<{ profile: CpuProfile }>('Profiler.stop');
    return { result, profile };
  } finally {
    ws.close();
  }
}

/** Kinds of work: a sample goes to the first kind one of whose patterns matches a frame of its stack … */
const STACK_KINDS: [string, RegExp][] = [
  ['usage records (UsageRecorder, TypeORM, pg)', /usage-recorder|typeorm|\/pg\/|pg-protocol|pricing/],
  ['provider plugin: stream usage tap, usage-chunk filter', /withoutEvents|plugin-system\/|dist\/plugins\//],
  ['request body: read, JSON parse, rewrite', /readBody|prepare .*gateway/],
];
/** … else to the first kind that matches the frame the sample was taken in … */
const LEAF_KINDS: [string, RegExp][] = [
  ['garbage collection', /^\(garbage collector\)/],
  ['Express, router, Nest adapter', /express\/|router\/|parseurl|finalhandler|@nestjs|on-finished/],
  ['undici and its upstream socket I/O', /undici\/|wasm/],
  ['gateway logic (admission, key choice, forwarding, relay, record)', /src\/gateway|src\/access-tokens|src\/common/],
];
/** … else to Node's core on the client side (HTTP server, sockets, streams) or, under undici, to undici. */
const CLIENT_SIDE = "Node's HTTP server, client sockets, streams";

interface Breakdown {
  busyMs: number;
  /** Share of the busy time per kind of work, largest first. */
  kinds: [string, number][];
  /** Share of the busy time per function (self time), largest first. */
  functions: [string, number][];
}

function breakdown(profile: CpuProfile): Breakdown {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<number, number>();
  profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000));
  const kinds = new Map<string, number>();
  const functions = new Map<string, number>();
  let busy = 0;
  for (const [id, ms] of self) {
    const leaf = byId.get(id)!;
    if (leaf.callFrame.functionName === '(idle)') continue;
    busy += ms;
    const frames: string[] = [];
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const { functionName, url } = byId.get(cur)!.callFrame;
      frames.push(`${functionName} ${url}`);
    }
    const kind =
      STACK_KINDS.find(([, re]) => frames.some((f) => re.test(f)))?.[0] ??
      LEAF_KINDS.find(([, re]) => re.test(frames[0]))?.[0] ??
      (frames.some((f) => /undici\//.test(f)) ? 'undici and its upstream socket I/O' : CLIENT_SIDE);
    kinds.set(kind, (kinds.get(kind) ?? 0) + ms);
    const { functionName, url, lineNumber } = leaf.callFrame;
    const where = url
      ? ` (${url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/dist\//, '')}:${lineNumber + 1})`
      : '';
    const name = `${functionName || '(anonymous)'}${where}`;
    functions.set(name, (functions.get(name) ?? 0) + ms);
  }
  const shares = (map: Map<string, number>) =>
    [...map.entries()].map(([k, v]): [string, number] => [k, v / busy]).sort((a, b) => b[1] - a[1]);
  return { busyMs: busy, kinds: shares(kinds), functions: shares(functions) };
}

const share = (value: number) => `${(value * 100).toFixed(0)} %`;

function describeBreakdown(b: Breakdown): string {
  return `${(b.busyMs / 1000).toFixed(1)} s busy; ${b.kinds
    .slice(0, 4)
    .map(([k, v]) => `${k} ${share(v)}`)
    .join(', ')}; top functions ${b.functions
    .slice(0, 4)
    .map(([k, v]) => `${k} ${share(v)}`)
    .join(', ')}`;
}

function profileSection(profiles: Record<Mode, Breakdown>): string {
  const kinds = [...new Set([...profiles.json.kinds, ...profiles.stream.kinds].map(([k]) => k))];
  const of = (b: Breakdown, kind: string) => b.kinds.find(([k]) => k === kind)?.[1] ?? 0;
  kinds.sort((a, b) => of(profiles.json, b) + of(profiles.stream, b) - of(profiles.json, a) - of(profiles.stream, a));
  const table = markdownTable(
    ['Kind of work', 'JSON', 'stream'],
    kinds.map((k) => [k, share(of(profiles.json, k)), share(of(profiles.stream, k))]),
  );
  const top = (b: Breakdown) =>
    b.functions
      .slice(0, 8)
      .map(([k, v]) => `\`${k}\` ${share(v)}`)
      .join(', ');
  return `Where Keyward's CPU goes: a CPU profile of Keyward (V8's sampling profiler through the inspector it was started
with, \`--inspect=127.0.0.1:0\`) over one more saturation window of about ${PROFILE_S} s per body kind, after the measured ones;
share of its busy time (${(profiles.json.busyMs / 1000).toFixed(1)} s JSON, ${(profiles.stream.busyMs / 1000).toFixed(1)} s streaming), by the kind of work on the stack:

${table}

Top functions by self time — JSON: ${top(profiles.json)}. Streaming: ${top(profiles.stream)}.
`;
}

export const gatewayBenchmark: Benchmark = {
  name: 'gateway',
  description: 'gateway overhead against the fake provider and a bare Node proxy (fixed rates, saturation, streams)',
  run: runGateway,
};
