import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Client } from 'pg';
import request from 'supertest';
import { Keyring } from '../../src/crypto/keyring';
import { countEnvelopes } from '../../src/crypto/sealed-columns';
import { startFakeProvider, type OpenAiFakeProvider } from '../fake-providers';
import { keywardCli, startKeyward, type RunningKeyward } from '../support/keyward-cli-process';
import { createEmptyDatabase } from '../support/test-database';

const OWNER = { email: 'owner@example.test', password: 'owner-password-123' };

async function withClient<T>(url: string, work: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

const envelopes = (url: string) =>
  withClient(url, (client) => countEnvelopes(async (sql, params) => (await client.query(sql, params)).rows));

/** Row counts of every table a backup carries, to compare a restore with its source. */
const rowCounts = (url: string) =>
  withClient(url, async (client) => {
    const { rows } = await client.query<{ relname: string }>(
      `SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p')
         AND NOT relispartition AND relname <> 'migrations' ORDER BY 1`,
    );
    const out: Record<string, number> = {};
    for (const { relname } of rows) {
      out[relname] = Number((await client.query(`SELECT count(*) FROM "${relname}"`)).rows[0].count);
    }
    return out;
  });

/**
 * `npx keyward` against a real Keyward (`node dist/src/main.js`) on one PostgreSQL database:
 * master key rotation end to end, backups restored into an empty database, users, the audit
 * chain and doctor.
 */
describe('The operations CLI', () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'keyward-cli-'));
  const keyFile = path.join(dataDir, 'master.keys');
  const archive = path.join(dataDir, 'state.kwbackup');
  let openai: OpenAiFakeProvider;
  let databaseUrl: string;
  let env: Record<string, string>;
  let app: RunningKeyward | undefined;
  let admin: string;
  let accessToken: string;
  const keys: { id: string; secret: string }[] = [];

  const start = async (extra: Record<string, string> = {}) => {
    app = await startKeyward({ ...env, ...extra });
    admin = (await request(app.url).post('/api/auth/token').send(OWNER).expect(200)).body.accessToken;
    return app;
  };
  const restart = async () => {
    expect(await app!.stop()).toBe(0);
    return start();
  };
  const chat = (url: string) =>
    fetch(`${url}/proxy/openai/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-5', messages: [{ role: 'user', content: 'hi' }] }),
    });
  const versionsInFile = () => Keyring.parse(readFileSync(keyFile, 'utf8').trim()).versions();

  beforeAll(async () => {
    openai = await startFakeProvider('openai');
    databaseUrl = await createEmptyDatabase();
    env = {
      DATABASE_URL: databaseUrl,
      KEYWARD_DATA_DIR: dataDir,
      KEYWARD_ADMIN_EMAIL: OWNER.email,
      KEYWARD_ADMIN_PASSWORD: OWNER.password,
      KEYWARD_PROVIDER_OPENAI_BASE_URL: openai.baseUrl,
      KEYWARD_USAGE_FLUSH_MS: '20',
    };
    await start();
    for (const name of ['first', 'second']) {
      const secret = openai.generateKey();
      const res = await request(app!.url)
        .post('/api/admin/api-keys')
        .set('Authorization', `Bearer ${admin}`)
        .send({ provider: 'openai', name, key: secret })
        .expect(201);
      keys.push({ id: res.body.id, secret });
    }
    accessToken = (
      await request(app!.url)
        .post('/api/admin/access-tokens')
        .set('Authorization', `Bearer ${admin}`)
        .send({ name: 'cli-test-app' })
        .expect(201)
    ).body.token;
    expect((await chat(app!.url)).status).toBe(200);
  }, 90_000);

  afterAll(async () => {
    await app?.stop();
    await openai.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('rotates the master key: add, restart, rewrap, retire — every key then opens under the new version only', async () => {
    const newest = await keywardCli(['master-key', 'retire', '1'], env);
    expect(newest.code).toBe(1);
    expect(newest.stderr).toContain('version 1 is the newest');

    const added = await keywardCli(['master-key', 'add'], env);
    expect(added.code).toBe(0);
    expect(added.stdout).toContain(`Added master key version 2 to ${keyFile}`);
    expect(versionsInFile()).toEqual([1, 2]);
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);

    // The running instance was started with version 1 only: re-wrapping now would lock it out.
    const early = await keywardCli(['master-key', 'rewrap'], env);
    expect(early.code).toBe(1);
    expect(early.stderr).toContain('no Keyward instance has started with master key version 2 yet');

    await restart();
    const inUse = await keywardCli(['master-key', 'retire', '1'], env);
    expect(inUse.code).toBe(1);
    expect(inUse.stderr).toMatch(/master key version 1 is still in use \(2 in api_keys\.secret_ciphertext\)/);

    const rewrap = await keywardCli(['master-key', 'rewrap'], env);
    expect(rewrap.stderr).toBe('');
    expect(rewrap.code).toBe(0);
    expect(rewrap.stdout).toContain('api_keys.secret_ciphertext: 2/2 re-wrapped to version 2');
    expect(rewrap.stdout).toContain('Every envelope is sealed with master key version 2');

    const retired = await keywardCli(['master-key', 'retire', '1'], env);
    expect(retired.code).toBe(0);
    expect(versionsInFile()).toEqual([2]);
    expect((await envelopes(databaseUrl)).map((e) => e.version)).toEqual(expect.arrayContaining([2]));
    expect((await envelopes(databaseUrl)).filter((e) => e.version !== 2)).toEqual([]);

    // Restarted on version 2 alone, every key still decrypts: the gateway uses them, verify opens them.
    await restart();
    const seen = openai.requests.length;
    for (let i = 0; i < 4; i++) expect((await chat(app!.url)).status).toBe(200);
    const used = new Set(openai.requests.slice(seen).map((r) => r.key));
    expect(used.size).toBeGreaterThan(0);
    for (const key of used) expect(keys.map((k) => k.secret)).toContain(key);
    for (const key of keys) {
      const verify = await request(app!.url)
        .post(`/api/admin/api-keys/${key.id}/verify`)
        .set('Authorization', `Bearer ${admin}`)
        .expect(200);
      expect(verify.body.valid).toBe(true);
    }
    const audit = await request(app!.url)
      .get('/api/admin/audit?action=master-key.')
      .set('Authorization', `Bearer ${admin}`)
      .expect(200);
    expect(audit.body.entries.map((e: { action: string }) => e.action)).toEqual([
      'master-key.retired',
      'master-key.rewrapped',
    ]);
  }, 120_000);

  it('backs up the whole state and restores it into an empty database: same keys, users, usage, a verifying audit chain', async () => {
    // Usage reaches the database within the flush interval.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const usageOf = async (url: string) =>
      (await request(url).get(`/api/admin/usage?groupBy=key`).set('Authorization', `Bearer ${admin}`).expect(200)).body;
    const sourceUsage = await usageOf(app!.url);
    const created = await keywardCli(['backup', 'create', archive], env);
    expect(created.code).toBe(0);
    expect(created.stdout).toMatch(/Backup written to .*state\.kwbackup: \d+ tables, \d+ rows/);
    expect(statSync(archive).mode & 0o777).toBe(0o600);
    // Encrypted: no email, no key hint, no table name in the clear.
    const bytes = readFileSync(archive);
    for (const clear of [OWNER.email, keys[0].id, 'usage_events']) expect(bytes.includes(clear)).toBe(false);
    const source = await rowCounts(databaseUrl);
    expect(source.usage_events).toBeGreaterThanOrEqual(1);

    const target = await createEmptyDatabase();
    const targetEnv = { ...env, DATABASE_URL: target };
    const restored = await keywardCli(['backup', 'restore', archive], targetEnv);
    expect(restored.stderr).toBe('');
    expect(restored.code).toBe(0);
    expect(await rowCounts(target)).toEqual(source);

    // Only into an empty database.
    const again = await keywardCli(['backup', 'restore', archive], targetEnv);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/is not empty \(rows in .*users/);

    const chain = await keywardCli(['audit', 'verify'], targetEnv);
    expect(chain.code).toBe(0);
    expect(chain.stdout).toMatch(/Audit chain intact: \d+ entries/);

    // The restored Keyward: same owner, same keys (they decrypt), same usage, same access token.
    await app!.stop();
    const copy = await start({ DATABASE_URL: target });
    const list = await request(copy.url).get('/api/admin/api-keys').set('Authorization', `Bearer ${admin}`).expect(200);
    expect(list.body.keys.map((k: { id: string }) => k.id).sort()).toEqual(keys.map((k) => k.id).sort());
    expect(await usageOf(copy.url)).toEqual(sourceUsage);
    expect(JSON.stringify(sourceUsage)).toMatch(/"requests":\s*\d/);
    const seen = openai.requests.length;
    expect((await chat(copy.url)).status).toBe(200);
    expect(keys.map((k) => k.secret)).toContain(openai.requests[seen].key);
    const verify = await request(copy.url).get('/api/admin/audit/verify').set('Authorization', `Bearer ${admin}`);
    expect(verify.body).toMatchObject({ ok: true, firstBreak: null });
    await copy.stop();
    app = undefined;
    await start();
  }, 120_000);

  it('restores a passphrase archive only with the right passphrase, and a failed restore leaves nothing behind', async () => {
    const passphrase = 'correct horse battery staple';
    const file = path.join(dataDir, 'with-passphrase.kwbackup');
    const made = await keywardCli(['backup', 'create', file, '--passphrase'], {
      ...env,
      KEYWARD_BACKUP_PASSPHRASE: passphrase,
    });
    expect(made.code).toBe(0);
    expect(made.stdout).toContain('encrypted with the passphrase');

    const target = await createEmptyDatabase();
    const wrong = await keywardCli(['backup', 'restore', file, '--passphrase'], {
      ...env,
      DATABASE_URL: target,
      KEYWARD_BACKUP_PASSPHRASE: 'not the passphrase at all',
    });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain('failed authentication');
    expect(Object.values(await rowCounts(target)).every((n) => n === 0)).toBe(true);

    const right = await keywardCli(['backup', 'restore', file, '--passphrase'], {
      ...env,
      DATABASE_URL: target,
      KEYWARD_BACKUP_PASSPHRASE: passphrase,
    });
    expect(right.code).toBe(0);
    expect((await rowCounts(target)).api_keys).toBe(2);

    // Without the master keys the archive's secrets cannot open: refused, nothing restored.
    const other = await createEmptyDatabase();
    const foreign = await keywardCli(['backup', 'restore', file, '--passphrase'], {
      ...env,
      DATABASE_URL: other,
      KEYWARD_BACKUP_PASSPHRASE: passphrase,
      KEYWARD_MASTER_KEYS: new Keyring([[2, Keyring.generateKey()]]).serialize(),
    });
    expect(foreign.code).toBe(78);
    expect(foreign.stderr).toContain('do not open with the master keys in KEYWARD_MASTER_KEYS');
    expect(Object.values(await rowCounts(other)).every((n) => n === 0)).toBe(true);
  }, 120_000);

  it('creates a user and resets a password from the shell (password on stdin, never an argument)', async () => {
    const email = 'auditor@example.test';
    const made = await keywardCli(
      ['user', 'create', '--email', email, '--role', 'auditor'],
      env,
      'first-password-123\n',
    );
    expect(made.code).toBe(0);
    expect(made.stdout).toMatch(/Created auditor auditor@example\.test/);
    await request(app!.url).post('/api/auth/token').send({ email, password: 'first-password-123' }).expect(200);

    const short = await keywardCli(['user', 'create', '--email', 'x@example.test', '--role', 'admin'], env, 'short\n');
    expect(short.code).toBe(1);
    expect(short.stderr).toContain('password must be at least 12 characters');

    const reset = await keywardCli(['user', 'reset-password', email], env, 'second-password-456\n');
    expect(reset.code).toBe(0);
    await request(app!.url).post('/api/auth/token').send({ email, password: 'first-password-123' }).expect(401);
    await request(app!.url).post('/api/auth/token').send({ email, password: 'second-password-456' }).expect(200);

    const audit = await request(app!.url)
      .get('/api/admin/audit?actor=keyward-cli&action=user.')
      .set('Authorization', `Bearer ${admin}`)
      .expect(200);
    expect(audit.body.entries.map((e: { action: string }) => e.action)).toEqual([
      'user.password-reset',
      'user.created',
    ]);
    expect(JSON.stringify(audit.body)).not.toContain('password-456');
  }, 60_000);

  it('doctor says what is fine and what to fix', async () => {
    const fine = await keywardCli(['doctor'], env);
    expect(fine.stdout).toContain('[ok  ] master keys: they open this database');
    expect(fine.stdout).toContain('[ok  ] database: schema up to date');
    expect(fine.code).toBe(0);

    const wrongKeys = await keywardCli(['doctor'], {
      ...env,
      KEYWARD_MASTER_KEYS: new Keyring([[1, Keyring.generateKey()]]).serialize(),
      REDIS_URL: 'redis://127.0.0.1:1',
    });
    expect(wrongKeys.code).toBe(1);
    expect(wrongKeys.stdout).toContain('[FAIL] master keys: they do not open this database');
    expect(wrongKeys.stdout).toContain('fix: set the master keys this database was sealed with in KEYWARD_MASTER_KEYS');
    expect(wrongKeys.stdout).toMatch(/\[WARN\] redis: 127\.0\.0\.1:1 does not answer/);

    const badConfig = await keywardCli(['doctor'], { ...env, PORT: 'eighty' });
    expect(badConfig.code).toBe(1);
    expect(badConfig.stdout).toContain('[FAIL] configuration: PORT must be');
  }, 60_000);
});

/** The CLI on the embedded database: through the running server if Keyward is up, never a second one. */
describe('The operations CLI on the embedded database', () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'keyward-cli-embedded-'));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it('works through the running Keyward’s server, and starts and stops its own when Keyward is down', async () => {
    const env = { KEYWARD_DATA_DIR: dataDir, KEYWARD_ADMIN_EMAIL: OWNER.email, KEYWARD_ADMIN_PASSWORD: OWNER.password };
    const running = await startKeyward(env);
    try {
      const live = await keywardCli(['audit', 'verify'], env);
      expect(live.code).toBe(0);
      expect(live.stderr).toContain(`Keyward's embedded PostgreSQL is running on ${dataDir}`);
      expect(live.stdout).toContain('Audit chain intact');
    } finally {
      expect(await running.stop()).toBe(0);
    }
    const offline = await keywardCli(['audit', 'verify'], env);
    expect(offline.code).toBe(0);
    expect(offline.stderr).not.toContain('is running');
    // It stopped the server it started: Keyward starts on the folder again.
    const again = await startKeyward(env);
    expect(await again.stop()).toBe(0);
  }, 90_000);
});
