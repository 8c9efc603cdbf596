import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Client } from 'pg';
import { startFakeProvider, type GroqFakeProvider, type OpenAiFakeProvider } from '../fake-providers';
import { createTestDatabase } from '../support/test-database';
import { adminApi, freePort, gatewayTraffic, startKeyward, type KeywardProcess } from '../support/keyward-process';

const OWNER = { email: 'owner@example.test', password: 'owner-password-123' };
/** Both instances decrypt the same keys. */
const MASTER_KEYS = `1:${randomBytes(32).toString('base64')}`;

/**
 * SIGTERM under traffic, on the compiled app as it ships: two instances on one PostgreSQL, six
 * keep-alive clients calling the one being stopped. Nothing recorded may be lost, no answer may
 * be a 5xx, the process exits 0, and no key is left marked because of the stop.
 */
describe('SIGTERM under traffic', () => {
  let openai: OpenAiFakeProvider;
  let groq: GroqFakeProvider;
  let databaseUrl: string;
  let db: Client;
  const dataDirs: string[] = [];
  const running: KeywardProcess[] = [];

  const start = async (extra: Record<string, string> = {}) => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'keyward-stop-'));
    dataDirs.push(dataDir);
    const proc = await startKeyward({
      PORT: String(await freePort()),
      DATABASE_URL: databaseUrl,
      KEYWARD_DATA_DIR: dataDir,
      KEYWARD_MASTER_KEYS: MASTER_KEYS,
      KEYWARD_ADMIN_EMAIL: OWNER.email,
      KEYWARD_ADMIN_PASSWORD: OWNER.password,
      KEYWARD_PROVIDER_OPENAI_BASE_URL: openai.baseUrl,
      KEYWARD_PROVIDER_GROQ_BASE_URL: groq.baseUrl,
      LOG_LEVEL: 'warn',
      ...extra,
    });
    running.push(proc);
    return proc;
  };

  beforeAll(async () => {
    [openai, groq] = await Promise.all([startFakeProvider('openai'), startFakeProvider('groq')]);
    databaseUrl = await createTestDatabase();
    db = new Client({ connectionString: databaseUrl });
    await db.connect();
  });

  afterAll(async () => {
    for (const proc of running) if (proc.child.exitCode === null) proc.child.kill('SIGKILL');
    await db.end();
    await openai.close();
    await groq.close();
    for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
  });

  it('loses no usage record, answers no 5xx, exits 0 and leaves every key healthy', async () => {
    const a = await start({ KEYWARD_SHUTDOWN_GRACE_MS: '3000' });
    const b = await start();
    const admin = await adminApi(a.url, OWNER.email, OWNER.password);
    // Each call takes 50 ms at the provider, so several are in flight when the signal comes.
    const keyIds = [
      await admin.addKey({ provider: 'openai', name: 'one', key: openai.generateKey({ kind: 'valid', delayMs: 50 }) }),
      await admin.addKey({ provider: 'openai', name: 'two', key: openai.generateKey({ kind: 'valid', delayMs: 50 }) }),
    ];
    // A call that never ends: the grace runs out and the stop cuts it.
    const hung = await admin.addKey({ provider: 'groq', name: 'hung', key: groq.generateKey({ kind: 'hang' }) });
    const token = await admin.accessToken();

    const traffic = gatewayTraffic(a.url, token, 6, 3_000);
    const cut = fetch(`${a.url}/proxy/groq/openai/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'llama-3.1-8b-instant', messages: [{ role: 'user', content: 'hi' }] }),
    }).catch(() => null);
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(traffic.ok).toBeGreaterThan(20);
    a.child.kill('SIGTERM');
    const code = await a.exited;
    traffic.stop();
    await traffic.done;
    await cut;

    expect(code).toBe(0);
    expect(traffic.statuses).toEqual({});
    const [{ count }] = (
      await db.query<{ count: string }>(
        `SELECT count(*) FROM usage_events WHERE success AND key_id = ANY($1) AND source = 'gateway'`,
        [keyIds],
      )
    ).rows;
    expect(Number(count)).toBe(traffic.ok);
    const keys = await db.query<{ id: string; health: string; cooldown_until: Date | null }>(
      `SELECT id, health, cooldown_until FROM api_keys WHERE id = ANY($1)`,
      [[...keyIds, hung]],
    );
    expect(keys.rows).toHaveLength(3);
    for (const key of keys.rows)
      expect({ id: key.id, health: key.health, cooldown: key.cooldown_until }).toEqual({
        id: key.id,
        health: 'healthy',
        cooldown: null,
      });

    // The other instance serves on with the same keys, none of them resting.
    const after = gatewayTraffic(b.url, token, 2, 20);
    await after.done;
    expect(after.ok).toBe(20);
    expect(after.statuses).toEqual({});
    b.child.kill('SIGTERM');
    expect(await b.exited).toBe(0);
  }, 90_000);
});
