import request from 'supertest';
import { ConsoleSession, OWNER, startTestApp, type TestApp } from '../support/test-app';

// Its own file (own app, own module registry): passport's strategies are process-wide, so two
// apps in one file would share one JWT strategy.
describe('Sign-in rate limit', () => {
  let limited: TestApp;
  beforeAll(async () => {
    limited = await startTestApp({ KEYWARD_SIGNIN_RATE_LIMIT: '3' });
  });
  afterAll(() => limited.close());

  it('slows password guessing: too many sign-in attempts get 429 with Retry-After, audited', async () => {
    for (let i = 0; i < 3; i++) {
      await request(limited.http)
        .post('/api/auth/token')
        .send({ email: OWNER.email, password: `guess-${i}` })
        .expect(401);
    }
    const refused = await request(limited.http).post('/api/auth/token').send(OWNER).expect(429);
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
    expect(refused.body).toMatchObject({ status: 429, title: 'Too many sign-in attempts' });
    const rows = await limited.dataSource.query(
      `SELECT 1 FROM audit_log WHERE action = 'auth.signin' AND outcome = 'denied' AND reason = 'rate limited'`,
    );
    expect(rows).toHaveLength(1);
  });

  it('limits the console form the same way, answering with the sign-in page', async () => {
    const s = new ConsoleSession(limited.http);
    await s.page('/login');
    const res = await s.post('/login', { email: OWNER.email, password: OWNER.password });
    expect(res.status).toBe(429);
    expect(res.text).toMatch(/Too many sign-in attempts/);
  });
});
