import { Client } from 'pg';
import request from 'supertest';
import { startFakeProvider, type OpenAiFakeProvider } from '../fake-providers';
import { apiToken, startTestApp, type TestApp } from '../support/test-app';

/**
 * A request's services share one transaction, so their queries go to one connection; those made
 * at the same moment (an event listener's while the request reads back what it wrote) are queued
 * by Keyward, in order. node-postgres deprecates queueing them itself, and pg 9 will refuse.
 */
describe('queries of one request in its shared transaction', () => {
  let t: TestApp;
  let openai: OpenAiFakeProvider;
  // pg's own test before its deprecation notice: a query while others are still queued.
  const queuedBehind: string[] = [];
  const query = Client.prototype.query;
  function watched(this: Client & { _queryQueue: unknown[]; pipeline?: boolean }, ...args: unknown[]) {
    if (this._queryQueue.length > 0 && !this.pipeline) queuedBehind.push(String(args[0]).slice(0, 60));
    return (query as (...a: unknown[]) => unknown).apply(this, args);
  }

  beforeAll(async () => {
    openai = await startFakeProvider('openai');
    process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL = openai.baseUrl;
    t = await startTestApp();
    Client.prototype.query = watched as typeof query;
  });
  afterAll(async () => {
    Client.prototype.query = query;
    await t.close();
    await openai.close();
    delete process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL;
  });

  it('adds, changes and revokes keys without two queries at once on the connection', async () => {
    const token = await apiToken(t.http);
    const auth = { Authorization: `Bearer ${token}` };
    for (let i = 0; i < 3; i++) {
      const created = await request(t.http)
        .post('/api/admin/api-keys')
        .set(auth)
        .send({
          provider: 'openai',
          name: `ambient ${i}`,
          key: openai.generateKey(),
          expiresAt: new Date(Date.now() + 90 * 86_400_000).toISOString(),
          rotationSchedule: '0 3 * * 1',
          limit: { value: 1_000_000, unit: 'tokens', period: 'monthly' },
        })
        .expect(201);
      const id = (created.body as { id: string }).id;
      await request(t.http)
        .patch(`/api/admin/api-keys/${id}`)
        .set(auth)
        .send({ name: `renamed ${i}` })
        .expect(200);
      await request(t.http).post(`/api/admin/api-keys/${id}/revoke`).set(auth).expect(200);
    }
    expect(queuedBehind).toEqual([]);
  });
});
