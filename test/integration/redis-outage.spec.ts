import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, connect } from 'node:net';
import { RedisRateLimiter } from '../../src/access-tokens/rate-limiter';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const LIMIT = 300;
const TIMEOUT_MS = 100;

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

async function until(what: string, check: () => boolean, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** This test's own redis-server (never the machine's), so that it can be killed and frozen. */
async function startRedis(port: number): Promise<ChildProcess> {
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    {
      stdio: 'ignore',
    },
  );
  const end = Date.now() + 10_000;
  for (;;) {
    const up = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => (socket.destroy(), resolve(true)));
      socket.once('error', () => resolve(false));
    });
    if (up) return child;
    if (Date.now() > end) throw new Error('redis-server did not start');
    await sleep(50);
  }
}

const hasRedisServer = (() => {
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

/**
 * Two instances sharing a 300/min budget in Redis while Redis is killed, restarted empty, and
 * frozen (SIGSTOP). Across everything, the instances together allow at most 1.1 × the limit in
 * the window, and once the circuit is open no call waits for Redis.
 */
(hasRedisServer ? describe : describe.skip)('Redis rate limits when Redis fails', () => {
  let port: number;
  let redis: ChildProcess;
  let a: RedisRateLimiter;
  let b: RedisRateLimiter;
  const prefix = `keyward:rl:outage-${randomBytes(4).toString('hex')}:`;

  /** `n` calls alternating between the instances; how many were allowed and how many waited. */
  async function calls(key: string, n: number) {
    let allowed = 0;
    let slow = 0;
    for (let i = 0; i < n; i++) {
      const started = performance.now();
      const result = await (i % 2 === 0 ? a : b).take(key, LIMIT);
      // "Waited for Redis": as long as the command timeout, or longer.
      if (performance.now() - started >= TIMEOUT_MS * 0.9) slow++;
      if (result.allowed) allowed++;
    }
    return { allowed, slow };
  }

  beforeAll(async () => {
    port = await freePort();
    redis = await startRedis(port);
    a = new RedisRateLimiter(`redis://127.0.0.1:${port}`, { prefix, commandTimeoutMs: TIMEOUT_MS });
    await a.ready();
    b = new RedisRateLimiter(`redis://127.0.0.1:${port}`, { prefix, commandTimeoutMs: TIMEOUT_MS });
    await b.ready();
    // A learns of B at its next heartbeat (every 5 s).
    await until('both instances to count each other', () => a.instanceCount === 2 && b.instanceCount === 2, 12_000);
  }, 30_000);

  afterAll(async () => {
    await a?.close();
    await b?.close();
    if (redis && redis.exitCode === null) {
      redis.kill('SIGCONT');
      redis.kill('SIGKILL');
    }
  });

  it('killed, then restarted empty: the window stays within 1.1 × the limit and no call waits', async () => {
    const key = 'token:killed';
    const before = await calls(key, 100);
    expect(before).toEqual({ allowed: 100, slow: 0 });

    redis.kill('SIGKILL');
    await new Promise((resolve) => redis.once('exit', resolve));
    const during = await calls(key, 1_000);
    expect(a.circuit).toBe('open');
    expect(b.circuit).toBe('open');
    // Each instance continued from the last count Redis gave and allowed only its half of the rest.
    expect(before.allowed + during.allowed).toBeLessThanOrEqual(LIMIT * 1.1);
    expect(before.allowed + during.allowed).toBeGreaterThanOrEqual(LIMIT * 0.9);
    expect(during.slow).toBe(0);

    // Back, but empty (no persistence): what was allowed locally is added to it again.
    redis = await startRedis(port);
    await until('the circuits to close', () => a.circuit === 'closed' && b.circuit === 'closed');
    const after = await calls(key, 200);
    expect(before.allowed + during.allowed + after.allowed).toBeLessThanOrEqual(LIMIT * 1.1);
    expect(after.slow).toBe(0);
  }, 60_000);

  it('hung: at most three calls per instance wait the 100 ms timeout, then none; limits hold', async () => {
    const key = 'token:hung';
    const before = await calls(key, 150);
    expect(before).toEqual({ allowed: 150, slow: 0 });

    redis.kill('SIGSTOP');
    let during: { allowed: number; slow: number };
    try {
      during = await calls(key, 1_000);
      expect(a.circuit).toBe('open');
      expect(b.circuit).toBe('open');
      expect(during.slow).toBeLessThanOrEqual(6);
      expect(before.allowed + during.allowed).toBeLessThanOrEqual(LIMIT * 1.1);
      expect(before.allowed + during.allowed).toBeGreaterThanOrEqual(LIMIT * 0.9);
    } finally {
      redis.kill('SIGCONT');
    }
    await until('the circuits to close', () => a.circuit === 'closed' && b.circuit === 'closed');
    const after = await calls(key, 100);
    expect(after.slow).toBe(0);
    expect(before.allowed + during.allowed + after.allowed).toBeLessThanOrEqual(LIMIT * 1.1);
  }, 60_000);
});
