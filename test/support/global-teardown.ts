import { rmSync } from 'node:fs';
import { TEST_ENV, withAdminClient } from './test-database';

/** Drops every database this run created, then stops the embedded server if there is one. */
export default async function globalTeardown(): Promise<void> {
  const serverUrl = process.env[TEST_ENV.serverUrl];
  const runId = process.env[TEST_ENV.runId];
  if (serverUrl && runId) {
    await withAdminClient(serverUrl, async (client) => {
      const { rows } = await client.query<{ datname: string }>(
        'SELECT datname FROM pg_database WHERE datname LIKE $1',
        [`kw\\_${runId}\\_%`],
      );
      for (const { datname } of rows) await client.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
    });
  }
  const embedded = globalThis.__KEYWARD_EMBEDDED__;
  if (embedded) {
    await embedded.database.stop();
    rmSync(embedded.dataDir, { recursive: true, force: true });
  }
}
