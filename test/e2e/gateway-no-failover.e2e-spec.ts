import request from 'supertest';
import { startFakeProvider, type OpenAiFakeProvider } from '../fake-providers';
import { UsageRecorder } from '../../src/usage/usage-recorder';
import { apiToken, startTestApp, type TestApp } from '../support/test-app';

/** The spec's `failover` feature switched off: one key per request, its error to the client. */
describe('Gateway with KEYWARD_FEATURE_FAILOVER=false', () => {
  let t: TestApp;
  let openai: OpenAiFakeProvider;

  beforeAll(async () => {
    openai = await startFakeProvider('openai');
    process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL = openai.baseUrl;
    t = await startTestApp({ KEYWARD_FEATURE_FAILOVER: 'false' });
  });
  afterAll(async () => {
    await t.close();
    await openai.close();
    delete process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL;
  });

  it('answers with the first key’s error instead of trying the next, and still marks the dead key', async () => {
    const admin = { Authorization: `Bearer ${await apiToken(t.http)}` };
    const dead = await request(t.http)
      .post('/api/admin/api-keys')
      .set(admin)
      .send({ provider: 'openai', name: 'dead', key: openai.generateKey({ kind: 'revoked' }), priority: 1 })
      .expect(201);
    await request(t.http)
      .post('/api/admin/api-keys')
      .set(admin)
      .send({ provider: 'openai', name: 'good', key: openai.generateKey(), priority: 2 })
      .expect(201);
    const { token } = (await request(t.http).post('/api/admin/access-tokens').set(admin).send({ name: 'app' })).body;
    const call = () =>
      request(t.http)
        .post('/proxy/openai/v1/chat/completions')
        .set('Authorization', `Bearer ${token}`)
        .send({ model: 'gpt-5', messages: [{ role: 'user', content: 'hi' }] });

    const first = await call();
    expect(first.status).toBe(401);
    expect(first.body.error).toMatchObject({ code: 'invalid_api_key' });
    // Marked dead, the key is skipped from now on even without failover.
    expect((await call()).status).toBe(200);
    await t.app.get(UsageRecorder).flush();
    const rows = await t.dataSource.query(`SELECT key_id, attempt, success FROM usage_events ORDER BY "timestamp"`);
    expect(rows[0]).toEqual({ key_id: dead.body.id, attempt: 1, success: false });
  });
});

/** Sending a call again after the provider may have accepted it is a choice an admin makes. */
describe('Gateway with KEYWARD_GATEWAY_RETRY_AFTER_SEND=true', () => {
  let t: TestApp;
  let openai: OpenAiFakeProvider;

  beforeAll(async () => {
    openai = await startFakeProvider('openai');
    process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL = openai.baseUrl;
    t = await startTestApp({ KEYWARD_UPSTREAM_TIMEOUT_MS: '400', KEYWARD_GATEWAY_RETRY_AFTER_SEND: 'true' });
  });
  afterAll(async () => {
    await t.close();
    await openai.close();
    delete process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL;
  });

  it('fails over from a hanging key to the next one and records both attempts', async () => {
    const admin = { Authorization: `Bearer ${await apiToken(t.http)}` };
    const hangs = await request(t.http)
      .post('/api/admin/api-keys')
      .set(admin)
      .send({ provider: 'openai', name: 'hangs', key: openai.generateKey({ kind: 'hang' }), priority: 1 })
      .expect(201);
    const fine = await request(t.http)
      .post('/api/admin/api-keys')
      .set(admin)
      .send({ provider: 'openai', name: 'fine', key: openai.generateKey(), priority: 2 })
      .expect(201);
    const { token } = (await request(t.http).post('/api/admin/access-tokens').set(admin).send({ name: 'app' })).body;
    const res = await request(t.http)
      .post('/proxy/openai/v1/chat/completions')
      .set('Authorization', `Bearer ${token}`)
      .send({ model: 'gpt-5', messages: [{ role: 'user', content: 'hi' }] });
    expect(res.status).toBe(200);
    expect(res.headers['x-keyward-attempts']).toBe('2');
    await t.app.get(UsageRecorder).flush();
    const rows = await t.dataSource.query(
      `SELECT key_id, attempt, success, error_type FROM usage_events ORDER BY attempt`,
    );
    expect(rows).toEqual([
      { key_id: hangs.body.id, attempt: 1, success: false, error_type: 'timeout' },
      { key_id: fine.body.id, attempt: 2, success: true, error_type: null },
    ]);
  });
});
