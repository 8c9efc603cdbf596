import { startFakeProvider } from '../fake-providers';

/**
 * The loopback fake OpenAI in a process of its own, for `npm run bench -- gateway`:
 * `node -r ts-node/register/transpile-only test/bench/fake-server.ts`. It registers the key in
 * BENCH_FAKE_KEY as valid with fixed usage (BENCH_FAKE_USAGE_INPUT/OUTPUT), writes stream chunks
 * back to back (chunkDelayMs 0, so that a stream's latency is all transport and proxy work),
 * prints `{"baseUrl": …}` on stdout and stops when its stdin closes (the benchmark left).
 */
async function main(): Promise<void> {
  const key = process.env.BENCH_FAKE_KEY;
  if (!key) throw new Error('BENCH_FAKE_KEY is required');
  const fake = await startFakeProvider('openai', { chunkDelayMs: 0 });
  fake.setKey(key, {
    kind: 'valid',
    usage: {
      input: Number(process.env.BENCH_FAKE_USAGE_INPUT ?? 12),
      output: Number(process.env.BENCH_FAKE_USAGE_OUTPUT ?? 5),
    },
  });
  // The fake remembers every request for tests; under load that would only grow.
  let served = 0;
  setInterval(() => {
    served += fake.requests.length;
    fake.requests.length = 0;
  }, 250).unref();

  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    served += fake.requests.length;
    process.stderr.write(`fake-server: served ${served} requests\n`);
    void fake.close().finally(() => process.exit(0));
  };
  process.stdin.on('end', stop);
  process.stdin.on('error', stop);
  process.stdin.resume();
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdout.write(`${JSON.stringify({ baseUrl: fake.baseUrl, pid: process.pid })}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`fake-server: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
