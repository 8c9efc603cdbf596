import { randomBytes } from 'node:crypto';
import request from 'supertest';
import { loadConfig } from '../../src/config/config';
import { TEST_ENV } from '../support/test-database';
import { apiToken, ConsoleSession, createUser, OWNER, startTestApp, type TestApp } from '../support/test-app';

jest.setTimeout(60_000);

/**
 * OWASP ASVS 4.0, V2 Authentication (level 2): anti-automation (2.2.1) — per-account lockout
 * besides the per-address limit, limits that hold across instances, and client addresses that
 * a client cannot choose.
 */
describe('V2 Authentication: lockout and anti-automation', () => {
  let t: TestApp;
  let owner: string;

  beforeAll(async () => {
    t = await startTestApp({ KEYWARD_TRUST_PROXY: 'loopback', KEYWARD_LOCKOUT_THRESHOLD: '10' });
    owner = await apiToken(t.http);
  });
  afterAll(() => t.close());

  const signIn = (email: string, password: string, ip: string) =>
    request(t.http).post('/api/auth/token').set('X-Forwarded-For', ip).send({ email, password });

  it('V2.2.1 locks an account after wrong passwords from 20 different addresses; the right one is then refused too', async () => {
    const victim = await createUser(t.http, owner, 'operator');
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) statuses.push((await signIn(victim.email, `guess-${i}`, `203.0.113.${i + 1}`)).status);
    // 10 wrong passwords are checked (401); from then on the account is locked (429).
    expect(statuses.slice(0, 10)).toEqual(Array(10).fill(401));
    expect(statuses.slice(10)).toEqual(Array(10).fill(429));

    const refused = await signIn(victim.email, victim.password, '198.51.100.1').expect(429);
    expect(refused.body.type).toBe('urn:keyward:problem:account-locked');
    expect(refused.body.detail).toMatch(/ask an owner or admin to unlock/);
    expect(refused.body.accessToken).toBeUndefined();

    const [{ count }] = await t.dataSource.query<{ count: string }[]>(
      `SELECT count(*) FROM audit_log WHERE action = 'auth.signin' AND actor_email = $1 AND reason = 'account locked'`,
      [victim.email],
    );
    expect(Number(count)).toBe(11);

    // An owner lifts it through the API; the person signs in, which clears the count.
    const locked = await request(t.http).get('/api/admin/lockouts').set('Authorization', `Bearer ${owner}`).expect(200);
    expect(locked.body.lockouts.map((l: { email: string }) => l.email)).toContain(victim.email);
    await request(t.http)
      .delete(`/api/admin/lockouts/${victim.id}`)
      .set('Authorization', `Bearer ${owner}`)
      .expect(200, { userId: victim.id, wasLocked: true });
    await signIn(victim.email, victim.password, '198.51.100.1').expect(200);
  });

  it('unlocks from the Security page without JavaScript', async () => {
    const victim = await createUser(t.http, owner, 'auditor');
    for (let i = 0; i < 10; i++) await signIn(victim.email, `guess-${i}`, `192.0.2.${i + 1}`).expect(401);
    await signIn(victim.email, victim.password, '192.0.2.99').expect(429);

    const console = new ConsoleSession(t.http);
    await console.signIn();
    const page = await console.page('/admin/security');
    expect(page.text).toContain(victim.email);
    const res = await console.post(`/admin/security/lockouts/${victim.id}/unlock`);
    expect(res.status).toBe(303);
    expect((await console.page('/admin/security')).text).toContain('Account unlocked.');
    await signIn(victim.email, victim.password, '192.0.2.99').expect(200);
  });

  it('V2.2.1 an operator cannot unlock accounts', async () => {
    const op = await createUser(t.http, owner, 'operator');
    const opToken = await apiToken(t.http, op.email, op.password);
    await request(t.http).delete(`/api/admin/lockouts/${op.id}`).set('Authorization', `Bearer ${opToken}`).expect(403);
  });

  it('refuses KEYWARD_TRUST_PROXY=true (and hop counts) at start: X-Forwarded-For would be the client’s to choose', () => {
    expect(() => loadConfig({ KEYWARD_TRUST_PROXY: 'true' })).toThrow(/would trust X-Forwarded-For from any client/);
    expect(() => loadConfig({ KEYWARD_TRUST_PROXY: '2' })).toThrow(/Name the proxies instead/);
    expect(() => loadConfig({ KEYWARD_TRUST_PROXY: '10.0.0.0/8, bogus' })).toThrow(/not understood: "bogus"/);
    expect(loadConfig({ KEYWARD_TRUST_PROXY: 'loopback, 10.0.0.0/8, 2001:db8::/32' }).trustProxy).toBe(
      'loopback,10.0.0.0/8,2001:db8::/32',
    );
  });
});

describe('V2 Authentication: limits that hold across instances and proxies', () => {
  const redisUrl = process.env[TEST_ENV.redisUrl];
  const onRedis = redisUrl ? it : it.skip;

  onRedis('V2.2.1 the per-address sign-in limit is shared by two instances through Redis', async () => {
    const env = { REDIS_URL: redisUrl!, KEYWARD_SIGNIN_RATE_LIMIT: '4', KEYWARD_TRUST_PROXY: 'loopback' };
    const [a, b] = [await startTestApp(env), await startTestApp(env)];
    try {
      // An address of its own, so no other run's counts meet this one in Redis.
      const ip = `2001:db8:${randomBytes(2).toString('hex')}::${randomBytes(2).toString('hex')}`;
      const attempt = (app: TestApp, i: number) =>
        request(app.http)
          .post('/api/auth/token')
          .set('X-Forwarded-For', ip)
          .send({ email: OWNER.email, password: `g-${i}` });
      const statuses = [];
      for (let i = 0; i < 6; i++) statuses.push((await attempt(i % 2 === 0 ? a : b, i)).status);
      // Four attempts in all, wherever they land; the fifth and sixth are refused on both instances.
      expect(statuses).toEqual([401, 401, 401, 401, 429, 429]);
      const other = await request(b.http).post('/api/auth/token').set('X-Forwarded-For', `${ip}1`).send(OWNER);
      expect(other.status).toBe(200);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('V2.2.1 X-Forwarded-For from a client that is not a trusted proxy is ignored', async () => {
    const app = await startTestApp({ KEYWARD_SIGNIN_RATE_LIMIT: '3', KEYWARD_TRUST_PROXY: '10.9.9.9' });
    try {
      const statuses = [];
      for (let i = 0; i < 5; i++) {
        const res = await request(app.http)
          .post('/api/auth/token')
          .set('X-Forwarded-For', `203.0.113.${i + 1}`)
          .send({ email: OWNER.email, password: `g-${i}` });
        statuses.push(res.status);
      }
      expect(statuses).toEqual([401, 401, 401, 429, 429]);
      const ips = await app.dataSource.query<{ ip: string }[]>(
        `SELECT DISTINCT ip FROM audit_log WHERE action = 'auth.signin' AND outcome <> 'success'`,
      );
      expect(ips.map((r) => r.ip).some((ip) => ip.startsWith('203.0.113.'))).toBe(false);
    } finally {
      await app.close();
    }
  });
});
