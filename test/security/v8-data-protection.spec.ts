import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Client } from 'pg';
import { spawn } from 'node:child_process';

jest.setTimeout(120_000);

/**
 * OWASP ASVS 4.0, V8 Data Protection / V1.4 (level 2): the embedded database runs Keyward as a
 * least-privileged role that can append to the audit log but not alter, empty or bypass it
 * (7.3.3 log integrity), on a fresh data folder and again on the same folder after a restart.
 */
describe('V8 Data protection: the embedded database’s application role', () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'keyward-role-'));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  async function asApp<T>(url: string, work: (client: Client) => Promise<T>): Promise<T> {
    const client = new Client({ connectionString: url });
    await client.connect();
    try {
      return await work(client);
    } finally {
      await client.end();
    }
  }

  const refusals = async (url: string) =>
    asApp(url, async (client) => {
      const tried: Record<string, string> = {};
      for (const [name, sql] of Object.entries({
        disableTrigger: 'ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_delete',
        dropTrigger: 'DROP TRIGGER audit_log_no_update_delete ON audit_log',
        dropFunction: 'DROP FUNCTION audit_log_append_only CASCADE',
        replicationRole: "SET session_replication_role = 'replica'",
        truncate: 'TRUNCATE audit_log',
        delete: 'DELETE FROM audit_log',
        update: "UPDATE audit_log SET reason = 'x'",
        dropCheckpoints: 'DROP TABLE audit_checkpoints',
      })) {
        try {
          await client.query(sql);
          tried[name] = 'allowed';
        } catch (error) {
          tried[name] = /permission denied|must be owner|must be superuser|append-only/.test((error as Error).message)
            ? 'refused'
            : (error as Error).message;
        }
      }
      return tried;
    });

  /** The embedded database in its own process (see support/embedded-role-probe.ts). */
  function startEmbedded(): Promise<{ url: string; stop(): Promise<void> }> {
    const child = spawn(
      process.execPath,
      ['-r', 'ts-node/register/transpile-only', path.join(__dirname, 'support', 'embedded-role-probe.ts'), dataDir],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    let output = '';
    return new Promise((resolve, reject) => {
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stdout.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        const line = output.split('\n').find((l) => l.startsWith('{'));
        if (!line) return;
        resolve({
          url: (JSON.parse(line) as { url: string }).url,
          stop: () =>
            new Promise<void>((done) => {
              child.once('exit', () => done());
              child.stdin.end();
            }),
        });
      });
      child.once('exit', (code) => reject(new Error(`the embedded database exited with ${code}: ${output}`)));
    });
  }

  it.each(['a fresh data folder', 'the same folder after a restart'])('on %s', async () => {
    const database = await startEmbedded();
    const url = database.url;
    try {
      expect(new URL(url).username).toBe('keyward_app');
      await asApp(url, async (client) => {
        const { rows } = await client.query('SELECT rolsuper FROM pg_roles WHERE rolname = current_user');
        expect(rows).toEqual([{ rolsuper: false }]);
        // It works as the application needs: its own tables, appending to the log.
        await client.query(`INSERT INTO audit_log (seq, at, action, outcome, prev_hash, hash)
          VALUES ((SELECT coalesce(max(seq), 0) + 1 FROM audit_log), now(), 'test', 'success', 'x', 'y')`);
        await client.query(
          `INSERT INTO audit_checkpoints (at, seq, hash, signature, reason) VALUES (now(), 1, 'h', 's', 'test')`,
        );
        await client.query(`DELETE FROM sessions`);
        await client.query(`CREATE TABLE probe_partition_like (id int)`);
        await client.query(`DROP TABLE probe_partition_like`);
      });
      const tried = await refusals(url);
      expect(tried).toEqual(Object.fromEntries(Object.keys(tried).map((k) => [k, 'refused'])));
    } finally {
      await database.stop();
    }
  });
});
