import { gatewayBenchmark } from './gateway.bench';
import { journalBenchmark } from './journal.bench';
import { keysBenchmark } from './keys.bench';
import { profileBenchmark } from './profile.bench';
import { sideBySideBenchmark } from './side-by-side.bench';
import { usageStoreBenchmark } from './usage-store.bench';
import { BENCHMARKS_FILE, type Benchmark, describeMachine, log, stopAllKeywards } from './support';

/**
 * `npm run bench [-- <name> …]`: runs every benchmark, or the ones named, one after the other,
 * each rewriting its own section of BENCHMARKS.md. Add a benchmark by listing it here.
 */
const BENCHMARKS: readonly Benchmark[] = [
  keysBenchmark,
  gatewayBenchmark,
  sideBySideBenchmark,
  journalBenchmark,
  usageStoreBenchmark,
  profileBenchmark,
];

/** Nothing here should take this long; a hung run is stopped instead of waiting forever. */
const DEADLINE_MS = 20 * 60_000;

async function main(args: string[]): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    log('usage: npm run bench [-- <name> ...]   (opt-in benchmarks run only when named)');
    for (const b of BENCHMARKS) log(`  ${b.name.padEnd(12)} ${b.description}${b.optIn ? ' [opt-in]' : ''}`);
    return 0;
  }
  // `--usage-store` works as well as `usage-store`.
  const argv = args.map((a) => a.replace(/^--/, ''));
  const unknown = argv.filter((name) => !BENCHMARKS.some((b) => b.name === name));
  if (unknown.length > 0) {
    process.stderr.write(
      `unknown benchmark(s): ${unknown.join(', ')}; known: ${BENCHMARKS.map((b) => b.name).join(', ')}\n`,
    );
    return 2;
  }
  const selected =
    argv.length > 0 ? BENCHMARKS.filter((b) => argv.includes(b.name)) : BENCHMARKS.filter((b) => !b.optIn);
  log(`bench: ${describeMachine()}`);
  let failed = 0;
  for (const benchmark of selected) {
    log(`bench: ${benchmark.name}: ${benchmark.description}`);
    try {
      await benchmark.run();
      log(`bench: ${benchmark.name}: section written to ${BENCHMARKS_FILE}`);
    } catch (error) {
      failed++;
      process.stderr.write(
        `bench: ${benchmark.name} failed: ${error instanceof Error ? error.stack : String(error)}\n`,
      );
    }
  }
  return failed > 0 ? 1 : 0;
}

/** Stops the apps this run started (and their embedded PostgreSQL) before leaving. */
const abort = (reason: string) => {
  process.stderr.write(`bench: ${reason}; stopping\n`);
  const force = setTimeout(() => process.exit(1), 40_000);
  void stopAllKeywards().finally(() => {
    clearTimeout(force);
    process.exit(1);
  });
};
const deadline = setTimeout(() => abort(`still running after ${DEADLINE_MS / 60_000} minutes`), DEADLINE_MS);
deadline.unref();
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => abort(`got ${signal}`));

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  },
);
