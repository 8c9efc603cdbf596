import { readdirSync, readFileSync, rmSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Pool } from 'undici';
import { generateOpenAiKey } from '../fake-providers';
import {
  ApiClient,
  BENCH_ADMIN,
  type Benchmark,
  log,
  processTimes,
  ROOT,
  startHelperProcess,
  startKeyward,
} from './support';

/**
 * `npm run bench -- profile`: where Keyward's time goes per gateway call. Keyward runs with
 * `--cpu-prof` while 50 connections (BENCH_PROFILE_CONNECTIONS) send the side-by-side benchmark's JSON (or, with
 * BENCH_PROFILE_MODE=stream, streamed) request for BENCH_PROFILE_SECONDS (default 10); the
 * profile's self time is then summed per function and per file and printed as µs per call.
 * Writes nothing to BENCHMARKS.md: it is the tool for finding the next cut, not a figure.
 */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

async function run(): Promise<void> {
  const seconds = Number(process.env.BENCH_PROFILE_SECONDS ?? 10);
  const mode = process.env.BENCH_PROFILE_MODE === 'stream' ? 'stream' : 'json';
  const model = process.env.BENCH_PROFILE_MODEL ?? 'gpt-5';
  const profileDir = mkdtempSync(path.join(os.tmpdir(), 'keyward-profile-'));
  const fakeKey = generateOpenAiKey('proj');
  const fake = await startHelperProcess<{ baseUrl: string }>('fake-server.ts', { BENCH_FAKE_KEY: fakeKey });
  // BENCH_PROFILE_CPU=off: no V8 profile, only the CPU time per call (the profiler costs some).
  const sampling = process.env.BENCH_PROFILE_CPU !== 'off' && process.env.BENCH_PROFILE_CPU !== 'perf';
  // BENCH_PROFILE_CPU=perf: no V8 profile; Node writes /tmp/perf-<pid>.map for `perf record -p`.
  const perf = process.env.BENCH_PROFILE_CPU === 'perf';
  const cpuProf = perf
    ? ['--perf-basic-prof-only-functions']
    : sampling
      ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`]
      : [];
  const payload = JSON.stringify({
    model,
    messages: [{ role: 'user', content: 'hi' }],
    ...(mode === 'stream' ? { stream: true } : {}),
  });
  let calls: number;
  // BENCH_PROFILE_TARGET=pipe|undici|dispatch profiles the pass-through proxy instead, for the baseline.
  const yardstick = process.env.BENCH_PROFILE_TARGET;
  if (yardstick === 'pipe' || yardstick === 'undici' || yardstick === 'dispatch') {
    const proxy = await startHelperProcess<{ url: string }>(
      'bare-proxy.ts',
      { BENCH_UPSTREAM: new URL(fake.info.baseUrl).origin, BENCH_UPSTREAM_KEY: fakeKey, BENCH_PROXY: yardstick },
      { nodeArgs: cpuProf },
    );
    try {
      calls = await load(proxy.child.pid!, proxy.info.url, '/v1/chat/completions', 'Bearer x', payload, seconds);
    } finally {
      await proxy.stop();
      await fake.stop();
    }
  } else {
    const app = await startKeyward({ env: { KEYWARD_PROVIDER_OPENAI_BASE_URL: fake.info.baseUrl }, nodeArgs: cpuProf });
    try {
      const api = new ApiClient(app.url);
      await api.signIn(BENCH_ADMIN.email, BENCH_ADMIN.password);
      await api.request('POST', '/api/admin/api-keys', { provider: 'openai', name: 'bench', key: fakeKey }, 201);
      const token = await api.request<{ token: string }>('POST', '/api/admin/access-tokens', { name: 'bench' }, 201);
      calls = await load(
        app.child.pid!,
        app.url,
        '/proxy/openai/v1/chat/completions',
        `Bearer ${token.body.token}`,
        payload,
        seconds,
      );
    } finally {
      await app.stop();
      await fake.stop();
    }
  }
  if (!sampling) return rmSync(profileDir, { recursive: true, force: true });
  const file = readdirSync(profileDir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error(`no profile written in ${profileDir}`);
  const profile = JSON.parse(readFileSync(path.join(profileDir, file), 'utf8')) as Profile;
  rmSync(profileDir, { recursive: true, force: true });
  summarise(profile, calls, seconds, mode);
}

/** 50 connections in a closed loop for `seconds`; the number of 200 answers. */
async function load(
  pid: number,
  origin: string,
  path: string,
  authorization: string,
  payload: string,
  seconds: number,
): Promise<number> {
  const pool = new Pool(origin, { connections: 64 });
  const send = async () => {
    const res = await pool.request({
      method: 'POST',
      path,
      headers: { authorization, 'content-type': 'application/json' },
      body: payload,
    });
    await res.body.dump();
    if (res.statusCode !== 200) throw new Error(`answered ${res.statusCode}`);
  };
  const loop = async (ms: number) => {
    const end = performance.now() + ms;
    let n = 0;
    const worker = async () => {
      for (; performance.now() < end; n++) await send();
    };
    await Promise.all(Array.from({ length: Number(process.env.BENCH_PROFILE_CONNECTIONS ?? 50) }, worker));
    return n;
  };
  // Warm-up first (JIT, caches, connections), outside the measured window.
  await loop(3_000);
  const before = cpuOf(pid);
  const started = performance.now();
  const calls = await loop(seconds * 1000);
  const after = cpuOf(pid);
  log(`profile: ${calls} calls, ${(calls / ((performance.now() - started) / 1000)).toFixed(0)} req/s`);
  log(
    `profile: CPU per call (from /proc, 10 ms ticks): process ${(((after.own - before.own) * 1000) / calls).toFixed(0)} µs ` +
      `(system ${(((after.system - before.system) * 1000) / calls).toFixed(0)} µs), ` +
      `its children (PostgreSQL) ${(((after.children - before.children) * 1000) / calls).toFixed(0)} µs`,
  );
  await pool.close();
  return calls;
}

/** CPU ms of a process and of everything under it. */
function cpuOf(pid: number): { own: number; system: number; children: number } {
  const all = processTimes();
  const under = new Set([pid]);
  let children = 0;
  for (let added = true; added;) {
    added = false;
    for (const [child, p] of all) {
      if (!under.has(child) && under.has(p.ppid)) {
        under.add(child);
        children += p.ms;
        added = true;
      }
    }
  }
  return { own: all.get(pid)?.ms ?? 0, system: all.get(pid)?.systemMs ?? 0, children };
}

function summarise(profile: Profile, calls: number, seconds: number, mode: string): void {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const fn = new Map<string, number>();
  const files = new Map<string, number>();
  let total = 0;
  for (const [id, us] of self) {
    const { callFrame } = byId.get(id)!;
    const where = callFrame.url.replace(`file://${ROOT}/`, '').replace(/^.*node_modules\//, 'nm/');
    const name = `${callFrame.functionName || '(anonymous)'} ${where}:${callFrame.lineNumber + 1}`;
    fn.set(name, (fn.get(name) ?? 0) + us);
    const group = where.startsWith('nm/')
      ? where
          .split('/')
          .slice(0, where.startsWith('nm/@') ? 3 : 2)
          .join('/')
      : where;
    files.set(group || callFrame.functionName, (files.get(group || callFrame.functionName) ?? 0) + us);
    if (callFrame.functionName !== '(idle)') total += us;
  }
  const perCall = (us: number) => (us / calls).toFixed(1);
  // BENCH_PROFILE_CALLERS=<function>: the call paths that spend time in it.
  const wanted = process.env.BENCH_PROFILE_CALLERS;
  if (wanted) {
    const parent = new Map<number, number>();
    for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
    const paths = new Map<string, number>();
    for (const [id, us] of self) {
      if (byId.get(id)!.callFrame.functionName !== wanted) continue;
      const names: string[] = [];
      for (
        let p = parent.get(id);
        p !== undefined && names.length < Number(process.env.BENCH_PROFILE_DEPTH ?? 8);
        p = parent.get(p)
      ) {
        const f = byId.get(p)!.callFrame;
        names.push(`${f.functionName || '(anonymous)'}@${f.url.split('/').slice(-1)[0]}:${f.lineNumber + 1}`);
      }
      paths.set(names.join(' < '), (paths.get(names.join(' < ')) ?? 0) + us);
    }
    log(`\ncallers of ${wanted} (µs per call):`);
    for (const [p, us] of [...paths].sort((a, b) => b[1] - a[1]).slice(0, 8)) log(`  ${perCall(us).padStart(7)}  ${p}`);
  }
  log(`profile: ${mode}, ${calls} calls in ${seconds} s (${(calls / seconds).toFixed(0)} req/s)`);
  log(`busy ${perCall(total)} µs per call (idle excluded)`);
  log('\nby file (µs per call):');
  for (const [name, us] of [...files].sort((a, b) => b[1] - a[1]).slice(0, 30))
    log(`  ${perCall(us).padStart(7)}  ${name}`);
  log('\nby function (µs per call):');
  for (const [name, us] of [...fn].sort((a, b) => b[1] - a[1]).slice(0, Number(process.env.BENCH_PROFILE_TOP ?? 50)))
    log(`  ${perCall(us).padStart(7)}  ${name}`);
}

export const profileBenchmark: Benchmark = {
  name: 'profile',
  description: 'Keyward under --cpu-prof on the side-by-side JSON call: self time per function, µs per call',
  optIn: true,
  run,
};
