import { appendFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import request from 'supertest';
import { startFakeProvider, type OpenAiFakeProvider } from '../fake-providers';
import { apiToken, ConsoleSession, createUser, startTestApp, type TestApp } from '../support/test-app';

jest.setTimeout(60_000);

type Report = {
  ok: boolean;
  head: { seq: number } | null;
  firstBreak: { seq: number; reason: string } | null;
  checkpoint: { seq: number; source: string } | null;
};

/**
 * OWASP ASVS 4.0, V7 Error Handling and Logging (level 2): every change is logged (7.1.3,
 * 7.2.2), logs cannot be bypassed by the input (7.3.1: encoding, injection) and are protected
 * from tampering (7.3.3), including removal of the newest entries.
 */
describe('V7 Logging: an audit log that cannot be bypassed', () => {
  let t: TestApp;
  let openai: OpenAiFakeProvider;
  let owner: string;
  let operator: string;
  let checkpointDir: string;
  const auth = (token: string) => ({ Authorization: `Bearer ${token}` });

  beforeAll(async () => {
    openai = await startFakeProvider('openai');
    process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL = openai.baseUrl;
    checkpointDir = mkdtempSync(path.join(tmpdir(), 'keyward-checkpoints-'));
    t = await startTestApp({ KEYWARD_AUDIT_CHECKPOINT_FILE: path.join(checkpointDir, 'checkpoints.jsonl') });
    owner = await apiToken(t.http);
    const op = await createUser(t.http, owner, 'operator');
    operator = await apiToken(t.http, op.email, op.password);
  });
  afterAll(async () => {
    await t.close();
    await openai.close();
    delete process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL;
    rmSync(checkpointDir, { recursive: true, force: true });
  });

  const keyCount = async () => Number((await t.dataSource.query(`SELECT count(*) AS n FROM api_keys`))[0].n);
  const verify = async () =>
    (await request(t.http).get('/api/admin/audit/verify').set(auth(owner)).expect(200)).body as Report;

  it('V7.3.1 the lone-surrogate reproduction changes nothing (400), and the refusal is the only answer', async () => {
    const before = await keyCount();
    // The raw JSON escape, as an attacker would send it: JSON.stringify would not produce it.
    const body = `{"provider":"openai","name":"first \\ud800","key":"${openai.generateKey()}","priority":0}`;
    const res = await request(t.http)
      .post('/api/admin/api-keys')
      .set(auth(operator))
      .set('Content-Type', 'application/json')
      .send(body)
      .expect(400);
    expect(res.headers['content-type']).toMatch(/problem\+json/);
    expect(res.body.detail).toMatch(/lone surrogate/);
    expect(await keyCount()).toBe(before);

    const user = await createUser(t.http, owner, 'auditor');
    const admin = await createUser(t.http, owner, 'admin');
    const adminToken = await apiToken(t.http, admin.email, admin.password);
    await request(t.http)
      .patch(`/api/admin/users/${user.id}`)
      .set(auth(adminToken))
      .set('Content-Type', 'application/json')
      .send('{"role":"admin","x":"\\udfff"}')
      .expect(400);
    const [row] = await t.dataSource.query(`SELECT role FROM users WHERE id = $1`, [user.id]);
    expect(row.role).toBe('auditor');
    expect((await verify()).ok).toBe(true);
  });

  it('V7.2.2 a change whose audit entry cannot be written is rolled back (API and console), and says so', async () => {
    // Fault injection: the database refuses this one action's audit entry.
    await t.dataSource.query(
      `ALTER TABLE audit_log ADD CONSTRAINT fault_injection CHECK (action <> 'api-key.create') NOT VALID`,
    );
    try {
      const before = await keyCount();
      const res = await request(t.http)
        .post('/api/admin/api-keys')
        .set(auth(operator))
        .send({ provider: 'openai', name: 'unaudited', key: openai.generateKey(), priority: 0 })
        .expect(500);
      expect(res.body.type).toBe('urn:keyward:problem:audit-unavailable');
      expect(await keyCount()).toBe(before);

      const console = new ConsoleSession(t.http);
      await console.signIn();
      await console.page('/admin/keys/new');
      const form = await console.post('/admin/keys', {
        provider: 'openai',
        name: 'unaudited-console',
        key: openai.generateKey(),
      });
      expect(form.status).toBe(500);
      expect(form.headers.location).toBeUndefined();
      expect(await keyCount()).toBe(before);
    } finally {
      await t.dataSource.query(`ALTER TABLE audit_log DROP CONSTRAINT fault_injection`);
    }
    // With the log writable again the same change goes through, with its entry.
    const created = await request(t.http)
      .post('/api/admin/api-keys')
      .set(auth(operator))
      .send({ provider: 'openai', name: 'audited', key: openai.generateKey(), priority: 0 })
      .expect(201);
    const [entry] = await t.dataSource.query(
      `SELECT outcome FROM audit_log WHERE action = 'api-key.create' AND target_id = $1`,
      [created.body.id],
    );
    expect(entry).toEqual({ outcome: 'success' });
  });

  it('V7.1.2 details are sanitised: control and oversized text cannot break the entry', async () => {
    const huge = 'x'.repeat(50_000);
    const res = await request(t.http)
      .post('/api/admin/api-keys')
      .set(auth(operator))
      .send({ provider: 'openai', name: `n${'y'.repeat(100)}`, key: openai.generateKey(), rotationSchedule: huge })
      .expect(400);
    expect(res.body.errors.map((e: { field: string }) => e.field)).toContain('rotationSchedule');
    const [entry] = await t.dataSource.query(
      `SELECT length(details::text) AS size FROM audit_log WHERE action = 'api-key.create' ORDER BY seq DESC LIMIT 1`,
    );
    expect(entry.size).toBeLessThan(10_000);
  });

  it('V7.3.3 deleting the newest audit rows is reported by verification, against the signed checkpoint', async () => {
    const taken = await request(t.http).post('/api/admin/audit/checkpoints').set(auth(owner)).expect(201);
    const checkpointSeq = taken.body.checkpoint.seq as number;
    const healthy = await verify();
    expect(healthy.ok).toBe(true);
    expect(healthy.checkpoint).toMatchObject({ seq: checkpointSeq });
    const line = readFileSync(path.join(checkpointDir, 'checkpoints.jsonl'), 'utf8').trim().split('\n').pop()!;
    expect(JSON.parse(line)).toMatchObject({ seq: checkpointSeq, signature: expect.stringMatching(/^[0-9a-f]{64}$/) });

    // Someone with the database's owner rights removes the newest entries and the checkpoints.
    await t.dataSource.query(`ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_delete`);
    await t.dataSource.query(`ALTER TABLE audit_checkpoints DISABLE TRIGGER audit_checkpoints_no_update_delete`);
    await t.dataSource.query(`DELETE FROM audit_log WHERE seq > $1`, [checkpointSeq - 3]);
    await t.dataSource.query(`DELETE FROM audit_checkpoints`);
    await t.dataSource.query(`ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update_delete`);
    await t.dataSource.query(`ALTER TABLE audit_checkpoints ENABLE TRIGGER audit_checkpoints_no_update_delete`);

    const report = await verify();
    expect(report.ok).toBe(false);
    expect(report.checkpoint).toMatchObject({ seq: checkpointSeq, source: 'file' });
    expect(report.firstBreak!.reason).toMatch(new RegExp(`entries ${checkpointSeq - 2}–${checkpointSeq} are missing`));
  });

  it('V7.3.3 a forged checkpoint (wrong signature) does not count', async () => {
    const file = path.join(checkpointDir, 'checkpoints.jsonl');
    const forged = {
      seq: 1,
      hash: 'f'.repeat(64),
      at: new Date().toISOString(),
      signature: '0'.repeat(64),
      reason: 'x',
    };
    appendFileSync(file, `${JSON.stringify(forged)}\n`);
    const report = await verify();
    expect(report.checkpoint!.seq).toBeGreaterThan(1);
  });
});
