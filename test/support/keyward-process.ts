import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import * as path from 'node:path';

/** The compiled app, as `npm start` runs it (build first: `npx nest build`). */
export const MAIN = path.resolve(__dirname, '../../dist/src/main.js');

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export interface KeywardProcess {
  child: ChildProcess;
  url: string;
  output: () => string;
  /** Resolves with the exit code (null when killed by a signal). */
  exited: Promise<number | null>;
}

/** Starts `node dist/src/main.js` with `env` (and no DATABASE_URL unless `env` sets one). */
export async function startKeyward(env: Record<string, string>, timeoutMs = 60_000): Promise<KeywardProcess> {
  const { DATABASE_URL: _ignored, ...inherited } = process.env;
  const child = spawn(process.execPath, [MAIN], { env: { ...inherited, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`not ready after ${timeoutMs} ms:\n${output}`)), timeoutMs);
    const check = () => {
      const ready = /is ready: open (\S+)/.exec(output);
      if (ready) {
        clearTimeout(timer);
        resolve(ready[1]);
      }
    };
    child.stdout!.on('data', check);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`exited with ${code} before it was ready:\n${output}`));
    });
  });
  return { child, url, output: () => output, exited };
}

export interface Traffic {
  /** Calls answered 200. */
  ok: number;
  /** Statuses other than 200, by status. */
  statuses: Record<number, number>;
  /** Calls that got no HTTP answer (connection refused or reset: never processed). */
  noAnswer: number;
  stop(): void;
  done: Promise<void>;
}

/**
 * `workers` clients calling the gateway one call after another over keep-alive connections,
 * until `stop()`, `maxCalls` in total, or the server goes away (a worker whose call gets no
 * answer stops). Loopback only, bounded. A call that fails while its body is read (a killed
 * server) counts as no answer.
 */
export function gatewayTraffic(
  url: string,
  token: string,
  workers = 6,
  maxCalls = 2_000,
  options: { stream?: boolean } = {},
): Traffic {
  let running = true;
  let started = 0;
  const traffic: Traffic = {
    ok: 0,
    statuses: {},
    noAnswer: 0,
    stop: () => (running = false),
    done: Promise.resolve(),
  };
  const worker = async () => {
    while (running && started < maxCalls) {
      started++;
      try {
        const res = await fetch(`${url}/proxy/openai/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({
            model: 'gpt-5',
            messages: [{ role: 'user', content: 'hi' }],
            ...(options.stream ? { stream: true } : {}),
          }),
        });
        // A stream counts as answered once it ended (the last event and the end of the body).
        await res.arrayBuffer();
        if (res.status === 200) traffic.ok++;
        else traffic.statuses[res.status] = (traffic.statuses[res.status] ?? 0) + 1;
      } catch {
        traffic.noAnswer++;
        return;
      }
    }
  };
  traffic.done = Promise.all(Array.from({ length: workers }, worker)).then(() => undefined);
  return traffic;
}

/** Signs in as the owner and returns admin API helpers for a running Keyward. */
export async function adminApi(url: string, email: string, password: string) {
  const res = await fetch(`${url}/api/auth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password }),
  });
  if (res.status !== 200) throw new Error(`sign-in answered ${res.status}`);
  const { accessToken } = (await res.json()) as { accessToken: string };
  const call = async (method: string, pathname: string, body?: unknown) => {
    const r = await fetch(`${url}${pathname}`, {
      method,
      headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    if (r.status >= 300) throw new Error(`${method} ${pathname} answered ${r.status}: ${text}`);
    return text ? (JSON.parse(text) as Record<string, unknown>) : {};
  };
  return {
    addKey: async (body: Record<string, unknown>) => (await call('POST', '/api/admin/api-keys', body)).id as string,
    accessToken: async (body: Record<string, unknown> = {}) =>
      (await call('POST', '/api/admin/access-tokens', { name: `app-${Math.random()}`, ...body })).token as string,
    call,
  };
}
