import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';

/** Shared pieces of `npm run bench`: the running app, timing, statistics and BENCHMARKS.md. */

export const ROOT = path.resolve(__dirname, '../..');
export const MAIN = path.join(ROOT, 'dist/src/main.js');
export const BENCHMARKS_FILE = path.join(ROOT, 'BENCHMARKS.md');

/** One benchmark of the harness; `run.ts` runs them in order, or the ones named. */
export interface Benchmark {
  /** The name on the command line (`npm run bench -- <name>`) and of its BENCHMARKS.md section. */
  name: string;
  description: string;
  /** Run only when named (`npm run bench -- <name>`): too long for every run. */
  optIn?: boolean;
  run(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Output

/** The harness reports on stdout (eslint forbids console in app code, not here). */
export function log(line = ''): void {
  process.stdout.write(`${line}\n`);
}

// ---------------------------------------------------------------------------------------------
// Keyward as a child process

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export interface RunningKeyward {
  url: string;
  child: ChildProcess;
  dataDir: string;
  /** "embedded" or "DATABASE_URL", as the app printed it. */
  databaseMode: string;
  readyAfterMs: number;
  output(): string;
  /** The app's warn/error/fatal log lines so far (pino JSON, level >= 40). */
  problems(): string[];
  /** SIGTERM, wait for the exit (the app stops its embedded PostgreSQL), remove the data folder. */
  stop(): Promise<number | null>;
}

export interface StartOptions {
  /** Extra environment; DATABASE_URL is always removed so the embedded PostgreSQL is used. */
  env?: Record<string, string>;
  readyTimeoutMs?: number;
  stopTimeoutMs?: number;
  /** Node options before the script, e.g. `--cpu-prof` (not allowed in NODE_OPTIONS). */
  nodeArgs?: string[];
  /** Another build's `dist/src/main.js`, to compare two builds side by side; default this one. */
  main?: string;
}

/** Aborted when the run is interrupted: every ApiClient request fails from then on. */
const interrupted = new AbortController();

/** Apps started by this process and not stopped yet, so an interrupted run can stop them. */
const running = new Set<RunningKeyward>();

/** Stops every Keyward this process started (on SIGINT/SIGTERM or the harness deadline). */
export async function stopAllKeywards(): Promise<void> {
  // Requests still being sent would keep the app's HTTP server from closing.
  interrupted.abort(new Error('benchmark interrupted'));
  await Promise.all([...running].map((app) => app.stop().catch(() => undefined)));
}

export const BENCH_ADMIN = { email: 'bench-owner@example.test', password: 'bench-owner-password-123' };

/**
 * `node dist/src/main.js` (what `npm start` runs) on a free loopback port with a fresh data
 * folder, so it initialises its own embedded PostgreSQL, and an owner from the environment.
 */
export async function startKeyward(options: StartOptions = {}): Promise<RunningKeyward> {
  const main = options.main ?? MAIN;
  if (!existsSync(main)) throw new Error(`${main} is missing: run npm run build first`);
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'keyward-bench-'));
  const port = await freePort();
  const { DATABASE_URL: _ignored, ...inherited } = process.env;
  const env: NodeJS.ProcessEnv = {
    ...inherited,
    HOST: '127.0.0.1',
    PORT: String(port),
    KEYWARD_DATA_DIR: dataDir,
    KEYWARD_ADMIN_EMAIL: BENCH_ADMIN.email,
    KEYWARD_ADMIN_PASSWORD: BENCH_ADMIN.password,
    KEYWARD_JWT_TTL_SECONDS: '3600',
    KEYWARD_SIGNIN_RATE_LIMIT: '1000',
    LOG_LEVEL: 'warn',
    ...options.env,
  };
  delete env.DATABASE_URL;
  const started = performance.now();
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), main], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  // Keep only the tail: a warn-level app is quiet, but a bad run must not fill the memory.
  const append = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-200_000);
  };
  child.stdout!.on('data', append);
  child.stderr!.on('data', append);

  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let self: RunningKeyward | undefined;
  const stop = async (): Promise<number | null> => {
    if (self) running.delete(self);
    let code: number | null;
    if (child.exitCode !== null || child.signalCode !== null) {
      code = child.exitCode;
    } else {
      child.kill('SIGTERM');
      const timeoutMs = options.stopTimeoutMs ?? 30_000;
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), timeoutMs)));
      const result = await Promise.race([exited, late]);
      clearTimeout(timer);
      if (result === 'late') {
        child.kill('SIGKILL');
        await exited;
        throw new Error(`Keyward did not stop within ${timeoutMs} ms of SIGTERM; killed it`);
      }
      code = result;
    }
    rmSync(dataDir, { recursive: true, force: true });
    return code;
  };

  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timeoutMs = options.readyTimeoutMs ?? 90_000;
      const timer = setTimeout(
        () => reject(new Error(`Keyward not ready after ${timeoutMs} ms:\n${output}`)),
        timeoutMs,
      );
      const check = () => {
        const ready = /is ready: open (\S+)[\s\S]*?database: (.+)\n/.exec(output);
        if (ready) {
          clearTimeout(timer);
          child.stdout!.off('data', check);
          resolve(ready[1]);
        }
      };
      child.stdout!.on('data', check);
      void exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`Keyward exited with ${code} before it was ready:\n${output}`));
      });
    });
    const mode = /database: (.+)\n/.exec(output)?.[1] ?? 'unknown';
    self = {
      url,
      child,
      dataDir,
      databaseMode: mode.startsWith('embedded') ? 'embedded' : mode,
      readyAfterMs: performance.now() - started,
      output: () => output,
      problems: () => logProblems(output),
      stop,
    };
    running.add(self);
    return self;
  } catch (error) {
    await stop().catch(() => undefined);
    throw error;
  }
}

function logProblems(output: string): string[] {
  return output.split('\n').filter((line) => {
    if (!line.startsWith('{')) return false;
    try {
      return ((JSON.parse(line) as { level?: number }).level ?? 0) >= 40;
    } catch {
      return false;
    }
  });
}

/** The command line that ran this, for the report: `npm run bench -- keys`. */
export function benchCommand(names: readonly string[] = process.argv.slice(2)): string {
  return names.length > 0 ? `npm run bench -- ${names.join(' ')}` : 'npm run bench';
}

// ---------------------------------------------------------------------------------------------
// HTTP

export interface ApiResponse<T = unknown> {
  status: number;
  body: T;
  ms: number;
}

/** A JSON API client on Node's fetch (keep-alive), timed on the client side. */
export class ApiClient {
  constructor(
    readonly baseUrl: string,
    private token?: string,
    private readonly timeoutMs = 30_000,
  ) {}

  async signIn(email: string, password: string): Promise<void> {
    const res = await this.request<{ accessToken: string }>('POST', '/api/auth/token', { email, password }, 200);
    this.token = res.body.accessToken;
  }

  /** Sends one request; throws unless the status is `expect` (so a benchmark never times errors). */
  async request<T = unknown>(method: string, url: string, body?: unknown, expect = 200): Promise<ApiResponse<T>> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const started = performance.now();
    const res = await fetch(this.baseUrl + url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.any([AbortSignal.timeout(this.timeoutMs), interrupted.signal]),
    });
    const text = await res.text();
    const ms = performance.now() - started;
    if (res.status !== expect) {
      throw new Error(`${method} ${url} answered ${res.status}, expected ${expect}: ${text.slice(0, 500)}`);
    }
    return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T, ms };
  }
}

// ---------------------------------------------------------------------------------------------
// Measuring

/**
 * Runs `warmup` unmeasured calls, then `samples` measured ones, one after the other, and returns
 * each call's wall-clock time in ms. `call(i)` gets a running index (warm-up calls included).
 */
export async function measureSequential(
  samples: number,
  warmup: number,
  call: (i: number) => Promise<unknown>,
): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await call(i);
  const times: number[] = [];
  for (let i = 0; i < samples; i++) {
    const started = performance.now();
    await call(warmup + i);
    times.push(performance.now() - started);
  }
  return times;
}

/** Calls `task(i)` for i in [0, count) with at most `concurrency` in flight; resolves when all are done. */
export async function runPool(
  count: number,
  concurrency: number,
  task: (i: number) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      await task(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
}

export interface Stats {
  n: number;
  median: number;
  p99: number;
  mean: number;
  min: number;
  max: number;
}

/** Median (mean of the middle two for an even n) and nearest-rank percentiles, by sorting. */
export function stats(samples: readonly number[]): Stats {
  if (samples.length === 0) throw new Error('no samples');
  const sorted = [...samples].sort((a, b) => a - b);
  const n = sorted.length;
  const mid = Math.floor(n / 2);
  return {
    n,
    median: n % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2,
    p99: percentile(sorted, 99),
    mean: sorted.reduce((sum, x) => sum + x, 0) / n,
    min: sorted[0],
    max: sorted[n - 1],
  };
}

/** Nearest-rank percentile of already sorted samples. */
export function percentile(sorted: readonly number[], p: number): number {
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

export const ms = (value: number): string => (value >= 100 ? value.toFixed(0) : value.toFixed(1));

// ---------------------------------------------------------------------------------------------
// Markdown and BENCHMARKS.md

export function markdownTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, c) => Math.max(3, h.length, ...rows.map((r) => (r[c] ?? '').length)));
  const numeric = headers.map((_h, c) => rows.length > 0 && rows.every((r) => /^[-\d.,\s%/]+$/.test(r[c] ?? '')));
  const line = (cells: readonly string[]) =>
    `| ${cells.map((cell, c) => (numeric[c] ? cell.padStart(widths[c]) : cell.padEnd(widths[c]))).join(' | ')} |`;
  const rule = `| ${widths.map((w, c) => (numeric[c] ? `${'-'.repeat(w - 1)}:` : '-'.repeat(w))).join(' | ')} |`;
  return [line(headers), rule, ...rows.map(line)].join('\n');
}

export interface MachineInfo {
  node: string;
  cpu: string;
  cores: number;
  memoryGiB: number;
  platform: string;
  date: string;
}

export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  return {
    node: process.version,
    cpu: cpus[0]?.model.trim() || 'unknown CPU',
    cores: cpus.length,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    platform: `${os.type()} ${os.release()} ${os.arch()}`,
    date: new Date().toISOString(),
  };
}

export function describeMachine(info: MachineInfo = machineInfo()): string {
  return `Node ${info.node}, ${info.cpu} (${info.cores} cores), ${info.memoryGiB} GiB RAM, ${info.platform}`;
}

const FILE_HEADER = `# Benchmarks

Measured by \`npm run bench\` (\`test/bench/\`): it builds Keyward, starts \`node dist/src/main.js\` on
its embedded PostgreSQL (no \`DATABASE_URL\`) in a fresh data folder, sends provider traffic to a
loopback fake provider (\`test/fake-providers\`), and rewrites the section of each benchmark it
ran below. Run one benchmark with \`npm run bench -- <name>\` (e.g. \`npm run bench -- keys\`).

All times are wall-clock milliseconds measured by the client on the same machine, over loopback.
Median and p99 (nearest rank) come from sorting the samples. Each section names the command,
date and machine of the run that wrote it.
`;

/**
 * Replaces what is between `<!-- bench:<name> -->` and `<!-- /bench:<name> -->` in
 * BENCHMARKS.md (creating the file, or appending the section, when missing); the rest of the
 * file, other benchmarks' sections included, stays as it is.
 */
export function writeSection(name: string, content: string, file = BENCHMARKS_FILE): void {
  const begin = `<!-- bench:${name} -->`;
  const end = `<!-- /bench:${name} -->`;
  const block = `${begin}\n${content.trim()}\n${end}`;
  const current = existsSync(file) ? readFileSync(file, 'utf8') : FILE_HEADER;
  const from = current.indexOf(begin);
  const to = current.indexOf(end);
  let next: string;
  if (from >= 0 && to > from) {
    next = current.slice(0, from) + block + current.slice(to + end.length);
  } else {
    next = `${current.trimEnd()}\n\n${block}\n`;
  }
  writeFileSync(file, next.endsWith('\n') ? next : `${next}\n`);
}

// ---------------------------------------------------------------------------------------------
// Helper processes (a fake provider, a yardstick proxy …)

export interface HelperProcess<T> {
  child: ChildProcess;
  /** The JSON object the script printed as its first stdout line. */
  info: T;
  output(): string;
  /** Closes its stdin (the script's cue to leave), then SIGTERM, then SIGKILL. */
  stop(): Promise<void>;
}

const helperChildren = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of helperChildren) child.kill('SIGKILL');
});

/**
 * Runs a TypeScript script of test/bench as `node -r ts-node/register/transpile-only <script>`
 * and waits for the JSON line it prints on stdout when ready. The script should leave when its
 * stdin closes, so that it goes with this process however this process ends.
 */
export async function startHelperProcess<T>(
  script: string,
  env: Record<string, string> = {},
  options: { nodeArgs?: string[]; readyTimeoutMs?: number } = {},
): Promise<HelperProcess<T>> {
  const child = spawn(
    process.execPath,
    [...(options.nodeArgs ?? []), '-r', 'ts-node/register/transpile-only', path.resolve(__dirname, script)],
    { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] },
  );
  helperChildren.add(child);
  let output = '';
  const append = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-100_000);
  };
  child.stdout!.on('data', append);
  child.stderr!.on('data', append);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  void exited.then(() => helperChildren.delete(child));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.stdin!.end();
    const timer = setTimeout(() => child.kill('SIGTERM'), 3_000);
    const killer = setTimeout(() => child.kill('SIGKILL'), 8_000);
    await exited;
    clearTimeout(timer);
    clearTimeout(killer);
  };
  try {
    const info = await new Promise<T>((resolve, reject) => {
      const timeoutMs = options.readyTimeoutMs ?? 30_000;
      const timer = setTimeout(
        () => reject(new Error(`${script} not ready after ${timeoutMs} ms:\n${output}`)),
        timeoutMs,
      );
      const check = () => {
        const line = /^(\{.*\})$/m.exec(output);
        if (line) {
          clearTimeout(timer);
          child.stdout!.off('data', check);
          resolve(JSON.parse(line[1]) as T);
        }
      };
      child.stdout!.on('data', check);
      void exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`${script} exited with ${child.exitCode} before it was ready:\n${output}`));
      });
    });
    return { child, info, output: () => output, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------
// CPU accounting (Linux /proc)

/** USER_HZ: the unit of utime/stime in /proc/<pid>/stat, 100 on Linux everywhere. */
const CLOCK_TICKS = 100;

/** User + system CPU of every process in ms, and its parent, from /proc (empty elsewhere). */
export function processTimes(): Map<number, { ppid: number; ms: number; systemMs: number }> {
  const all = new Map<number, { ppid: number; ms: number; systemMs: number }>();
  let entries: string[];
  try {
    entries = readdirSync('/proc').filter((name) => /^\d+$/.test(name));
  } catch {
    return all;
  }
  for (const name of entries) {
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // After "pid (comm) ": state ppid … utime (12th) stime (13th).
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      all.set(Number(name), {
        ppid: Number(fields[1]),
        ms: ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS,
        systemMs: (Number(fields[12]) * 1000) / CLOCK_TICKS,
      });
    } catch {
      // The process ended meanwhile.
    }
  }
  return all;
}
