import { existsSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Client } from 'pg';
import request from 'supertest';
import { Keyring } from '../../src/crypto/keyring';
import { MAIN, runToExit, startKeyward } from '../support/keyward-cli-process';
import { createEmptyDatabase } from '../support/test-database';

const refusal = (stderr: string) => ({
  // A message for the operator, not a crash: no stack frames.
  hasStack: /^\s+at .+\(.+:\d+:\d+\)$/m.test(stderr),
});

/**
 * `npm start` with a missing or wrong master key: it stops at once with exit code 78 and a
 * message that names the file or the variable, and never creates a key beside existing data.
 */
describe('Start-up with a missing or wrong master key', () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'keyward-mk-'));
  const keyFile = path.join(dataDir, 'master.keys');
  let databaseUrl: string;

  beforeAll(async () => {
    databaseUrl = await createEmptyDatabase();
    const first = await startKeyward({ DATABASE_URL: databaseUrl, KEYWARD_DATA_DIR: dataDir });
    expect(first.output()).toMatch(/Generated a master key in .*master\.keys/);
    await request(first.url).get('/health/ready').expect(200);
    expect(await first.stop()).toBe(0);
  }, 90_000);
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it('refuses to start when master.keys is gone but the database holds sealed data, and does not create one', async () => {
    const original = readFileSync(keyFile, 'utf8');
    unlinkSync(keyFile);
    try {
      const run = await runToExit([MAIN], { DATABASE_URL: databaseUrl, KEYWARD_DATA_DIR: dataDir, PORT: '0' });
      expect(run.code).toBe(78);
      expect(run.stderr).toContain(`${keyFile} does not exist`);
      expect(run.stderr).toMatch(/KEYWARD_MASTER_KEYS/);
      expect(run.stderr).toMatch(/does not generate a new key beside existing data/);
      expect(refusal(run.stderr).hasStack).toBe(false);
      expect(existsSync(keyFile)).toBe(false);
    } finally {
      writeFileSync(keyFile, original, { mode: 0o600 });
    }
  });

  it('refuses a key file whose key does not open the database, naming the file', async () => {
    const original = readFileSync(keyFile, 'utf8');
    writeFileSync(keyFile, new Keyring([[1, Keyring.generateKey()]]).serialize() + '\n', { mode: 0o600 });
    try {
      const run = await runToExit([MAIN], { DATABASE_URL: databaseUrl, KEYWARD_DATA_DIR: dataDir, PORT: '0' });
      expect(run.code).toBe(78);
      expect(run.stderr).toContain(`the master keys in ${keyFile} do not open this database`);
      expect(refusal(run.stderr).hasStack).toBe(false);
    } finally {
      writeFileSync(keyFile, original, { mode: 0o600 });
    }
  });

  it('refuses a wrong KEYWARD_MASTER_KEYS, naming the variable', async () => {
    const run = await runToExit([MAIN], {
      DATABASE_URL: databaseUrl,
      KEYWARD_DATA_DIR: dataDir,
      PORT: '0',
      KEYWARD_MASTER_KEYS: new Keyring([[1, Keyring.generateKey()]]).serialize(),
    });
    expect(run.code).toBe(78);
    expect(run.stderr).toContain('the master keys in KEYWARD_MASTER_KEYS do not open this database (DATABASE_URL)');
    expect(refusal(run.stderr).hasStack).toBe(false);
  });

  it('refuses keys that lack a version the stored envelopes use', async () => {
    // The server secret is re-wrapped to the newest version at start; the file then keeps only v2.
    const v1 = Keyring.parse(readFileSync(keyFile, 'utf8').trim());
    const v2 = new Keyring([
      ...v1.versions().map((v) => [v, v1.get(v)!] as [number, Buffer]),
      [2, Keyring.generateKey()],
    ]);
    const client = new Client({ connectionString: databaseUrl });
    await client.connect();
    // An envelope from v1 that start-up does not re-wrap by itself (a provider key's).
    const [{ envelope }] = (await client.query(`SELECT envelope FROM app_secrets WHERE name = 'root'`)).rows;
    await client.query(`INSERT INTO app_secrets (name, envelope) VALUES ('legacy', $1)`, [envelope]);
    await client.end();
    const onlyV2 = new Keyring([[2, v2.get(2)!]]);
    const withV2 = await startKeyward({
      DATABASE_URL: databaseUrl,
      KEYWARD_DATA_DIR: dataDir,
      KEYWARD_MASTER_KEYS: v2.serialize(),
    });
    expect(await withV2.stop()).toBe(0);
    const run = await runToExit([MAIN], {
      DATABASE_URL: databaseUrl,
      KEYWARD_DATA_DIR: dataDir,
      PORT: '0',
      KEYWARD_MASTER_KEYS: onlyV2.serialize(),
    });
    expect(run.code).toBe(78);
    expect(run.stderr).toMatch(
      /KEYWARD_MASTER_KEYS lacks master key versions the database still uses \(1 in app_secrets\.envelope use version 1\)/,
    );
    expect(refusal(run.stderr).hasStack).toBe(false);
  }, 60_000);
});

/** Instances starting together on a fresh database migrate one after the other. */
describe('Two instances starting at once on a fresh database', () => {
  it.each([1, 2, 3])(
    'both start and agree on one schema (trial %i)',
    async () => {
      const databaseUrl = await createEmptyDatabase();
      const keys = new Keyring([[1, Keyring.generateKey()]]).serialize();
      const dirs = [0, 1].map(() => mkdtempSync(path.join(tmpdir(), 'keyward-race-')));
      try {
        const started = await Promise.allSettled(
          dirs.map((dir) =>
            startKeyward({ DATABASE_URL: databaseUrl, KEYWARD_DATA_DIR: dir, KEYWARD_MASTER_KEYS: keys }),
          ),
        );
        const running = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
        try {
          expect(started.map((s) => (s.status === 'rejected' ? String(s.reason) : 'ready'))).toEqual([
            'ready',
            'ready',
          ]);
          for (const r of running) await request(r.url).get('/health/ready').expect(200);
          const client = new Client({ connectionString: databaseUrl });
          await client.connect();
          const { rows } = await client.query('SELECT name FROM migrations ORDER BY id');
          await client.end();
          // Each migration applied exactly once.
          expect(new Set(rows.map((r) => r.name)).size).toBe(rows.length);
          expect(rows.length).toBeGreaterThan(0);
        } finally {
          for (const r of running) await r.stop();
        }
      } finally {
        for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
      }
    },
    90_000,
  );
});
