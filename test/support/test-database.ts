import { randomBytes } from 'node:crypto';
import { Client } from 'pg';

/**
 * The test run's PostgreSQL: the machine's server when DATABASE_URL is set, else an embedded
 * one started by the global setup. Every test file gets its own database cloned from a template
 * that already has the migrations applied, so files run in parallel and never see each other's
 * data, and a run never sees another run's (names carry the run id; teardown drops them).
 */
export const TEST_ENV = {
  serverUrl: 'KEYWARD_TEST_SERVER_URL',
  template: 'KEYWARD_TEST_TEMPLATE',
  runId: 'KEYWARD_TEST_RUN_ID',
  /** Empty when no Redis was reachable at the start of the run. */
  redisUrl: 'KEYWARD_TEST_REDIS',
} as const;

export function databaseUrl(serverUrl: string, database: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

export async function withAdminClient<T>(serverUrl: string, work: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: databaseUrl(serverUrl, 'postgres') });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** A fresh database for one test file, cloned from the migrated template. */
export async function createTestDatabase(): Promise<string> {
  const serverUrl = process.env[TEST_ENV.serverUrl];
  const template = process.env[TEST_ENV.template];
  const runId = process.env[TEST_ENV.runId];
  if (!serverUrl || !template || !runId) {
    throw new Error('the test database is not prepared: run the tests through jest (test/support/global-setup.ts)');
  }
  const name = `kw_${runId}_${randomBytes(4).toString('hex')}`;
  await withAdminClient(serverUrl, async (client) => {
    // Two files cloning the template at the same instant can collide on its lock; retry briefly.
    for (let attempt = 1; ; attempt++) {
      try {
        await client.query(`CREATE DATABASE "${name}" TEMPLATE "${template}"`);
        return;
      } catch (error) {
        if (attempt >= 20 || !/being accessed by other users/.test((error as Error).message)) throw error;
        await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
      }
    }
  });
  return databaseUrl(serverUrl, name);
}

export async function dropDatabase(serverUrl: string, name: string): Promise<void> {
  await withAdminClient(serverUrl, (client) => client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`));
}

/** A database with nothing in it, not even the migrations (a first start, a restore target). */
export async function createEmptyDatabase(): Promise<string> {
  const serverUrl = process.env[TEST_ENV.serverUrl];
  const runId = process.env[TEST_ENV.runId];
  if (!serverUrl || !runId) {
    throw new Error('the test database is not prepared: run the tests through jest (test/support/global-setup.ts)');
  }
  const name = `kw_${runId}_${randomBytes(4).toString('hex')}`;
  await withAdminClient(serverUrl, (client) => client.query(`CREATE DATABASE "${name}"`));
  return databaseUrl(serverUrl, name);
}
