import request from 'supertest';
import { apiToken, ConsoleSession, createUser, OWNER, startTestApp, type TestApp } from '../support/test-app';

type Entry = { seq: number; action: string; outcome: string; actor: { email: string | null }; at: string };

describe('Audit log: filters, pages, append-only chain', () => {
  let t: TestApp;
  let token: string;
  const auth = () => ({ Authorization: `Bearer ${token}` });

  beforeAll(async () => {
    t = await startTestApp();
    token = await apiToken(t.http);
    // A little history: failed and successful sign-ins, two users created, one denied request.
    await request(t.http).post('/api/auth/token').send({ email: OWNER.email, password: 'wrong-password' }).expect(401);
    await createUser(t.http, token, 'operator', 'op@example.test');
    const auditor = await createUser(t.http, token, 'auditor', 'aud@example.test');
    const auditorToken = await apiToken(t.http, auditor.email, auditor.password);
    await request(t.http).post('/api/admin/users').set('Authorization', `Bearer ${auditorToken}`).send({}).expect(403);
  });
  afterAll(() => t.close());

  const list = async (query: Record<string, string | number>) =>
    (await request(t.http).get('/api/admin/audit').query(query).set(auth()).expect(200)).body as {
      entries: Entry[];
      total: number;
      page: number;
      pageSize: number;
    };

  it('records who did what: changes, sign-ins and denials, newest first, never a password', async () => {
    const { entries, total } = await list({ pageSize: 200 });
    expect(total).toBe(entries.length);
    const actions = entries.map((e) => `${e.action}:${e.outcome}`);
    expect(actions).toEqual(
      expect.arrayContaining([
        'auth.signin:failure',
        'auth.signin:success',
        'user.create:success',
        'access.denied:denied',
      ]),
    );
    expect(entries.map((e) => e.seq)).toEqual([...entries.map((e) => e.seq)].sort((a, b) => b - a));
    const created = entries.find((e) => e.action === 'user.create')!;
    expect(created).toMatchObject({ actor: { email: OWNER.email, role: 'owner' }, target: { type: 'User' } });
    expect(created).toHaveProperty('ip');
    expect(created).toHaveProperty('userAgent');
    const raw = JSON.stringify(entries);
    expect(raw).not.toContain('wrong-password');
    expect(raw).not.toContain('operator-password-123');
  });

  it('filters by actor, action, target, outcome and time range, and pages', async () => {
    const denied = await list({ outcome: 'denied' });
    expect(denied.entries.length).toBeGreaterThan(0);
    expect(denied.entries.every((e) => e.outcome === 'denied')).toBe(true);

    const byActor = await list({ actor: 'aud@example' });
    expect(byActor.entries.every((e) => e.actor.email === 'aud@example.test')).toBe(true);

    const byAction = await list({ action: 'user.create', actor: OWNER.email });
    expect(byAction.total).toBe(2);

    const byTarget = await list({ target: 'User' });
    expect(byTarget.entries.length).toBeGreaterThan(0);

    const future = await list({ from: new Date(Date.now() + 3600_000).toISOString() });
    expect(future.total).toBe(0);
    const past = await list({ to: new Date(Date.now() - 3600_000).toISOString() });
    expect(past.total).toBe(0);

    const first = await list({ page: 1, pageSize: 2 });
    const second = await list({ page: 2, pageSize: 2 });
    expect(first.entries).toHaveLength(2);
    expect(second.entries[0].seq).toBeLessThan(first.entries[1].seq);

    const bad = await request(t.http)
      .get('/api/admin/audit')
      .query({ outcome: 'maybe', from: 'yesterday' })
      .set(auth());
    expect(bad.status).toBe(400);
    expect((bad.body.errors as { field: string }[]).map((e) => e.field).sort()).toEqual(['from', 'outcome']);
  });

  it('refuses to change or delete entries through SQL', async () => {
    await expect(t.dataSource.query(`UPDATE audit_log SET reason = 'edited' WHERE seq = 1`)).rejects.toThrow(
      /append-only/,
    );
    await expect(t.dataSource.query(`DELETE FROM audit_log WHERE seq = 1`)).rejects.toThrow(/append-only/);
  });

  it('detects a tampered row and names the first broken link', async () => {
    const intact = await request(t.http).get('/api/admin/audit/verify').set(auth()).expect(200);
    expect(intact.body).toMatchObject({ ok: true, firstBreak: null });
    expect(intact.body.checked).toBeGreaterThan(5);

    // Someone with superuser rights bypasses the trigger and rewrites history.
    const target = (await list({ action: 'auth.signin', outcome: 'failure' })).entries[0];
    await t.dataSource.transaction(async (manager) => {
      await manager.query(`SET LOCAL session_replication_role = replica`);
      await manager.query(`UPDATE audit_log SET outcome = 'success' WHERE seq = $1`, [target.seq]);
    });
    const broken = await request(t.http).get('/api/admin/audit/verify').set(auth()).expect(200);
    expect(broken.body).toMatchObject({ ok: false, firstBreak: { seq: target.seq, reason: expect.any(String) } });

    const s = new ConsoleSession(t.http);
    await s.signIn();
    const fragment = await s.htmx('get', '/admin/audit/verify');
    expect(fragment.text).toContain(`Chain broken at entry #${target.seq}`);
  });

  it('detects a deleted row, once the edited one is put back', async () => {
    // Undo the previous test's edit: the chain verifies again, so detection is not sticky.
    await t.dataSource.transaction(async (manager) => {
      await manager.query(`SET LOCAL session_replication_role = replica`);
      await manager.query(
        `UPDATE audit_log SET outcome = 'failure' WHERE action = 'auth.signin' AND reason IS NOT NULL AND status = 401`,
      );
    });
    await request(t.http)
      .get('/api/admin/audit/verify')
      .set(auth())
      .expect(200, /"ok":true/);

    await t.dataSource.transaction(async (manager) => {
      await manager.query(`SET LOCAL session_replication_role = replica`);
      await manager.query(`DELETE FROM audit_log WHERE seq = 2`);
    });
    const res = await request(t.http).get('/api/admin/audit/verify').set(auth()).expect(200);
    expect(res.body).toMatchObject({ ok: false, firstBreak: { seq: 3, reason: expect.stringMatching(/missing/) } });
  });
});
