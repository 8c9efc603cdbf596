import * as path from 'node:path';
import request from 'supertest';
import { startFakeProvider, type OpenAiFakeProvider } from '../fake-providers';
import { apiToken, ConsoleSession, createUser, startTestApp, type TestApp } from '../support/test-app';

const fixtures = path.resolve(__dirname, '../fixtures/plugins');

describe('Providers: plugins, their API and console page, pricing', () => {
  let t: TestApp;
  let token: string;
  let operatorToken: string;
  let exampleServer: OpenAiFakeProvider;
  const auth = () => ({ Authorization: `Bearer ${token}` });

  beforeAll(async () => {
    // The third-party plugin speaks the OpenAI wire format; the OpenAI fake stands in for its API.
    exampleServer = await startFakeProvider('openai', { models: ['example-small', 'example-large'] });
    process.env.KEYWARD_PROVIDER_EXAMPLE_LLM_BASE_URL = exampleServer.baseUrl;
    t = await startTestApp({
      KEYWARD_PLUGINS: ['example-llm', 'bad-manifest', 'missing-entry', 'incompatible', 'throwing']
        .map((p) => path.join(fixtures, p))
        .join(','),
    });
    token = await apiToken(t.http);
    const operator = await createUser(t.http, token, 'operator');
    operatorToken = await apiToken(t.http, operator.email, operator.password);
  });
  afterAll(async () => {
    await t.close();
    await exampleServer.close();
    delete process.env.KEYWARD_PROVIDER_EXAMPLE_LLM_BASE_URL;
  });

  it('lists the four built-ins with the spec ProviderConfig fields, the external plugin, and the failures', async () => {
    const res = await request(t.http).get('/api/admin/providers').set(auth()).expect(200);
    const byId = Object.fromEntries(res.body.providers.map((p: { id: string }) => [p.id, p]));
    for (const id of ['openai', 'anthropic', 'groq', 'openrouter', 'example-llm']) {
      expect(byId[id]).toMatchObject({
        id,
        name: expect.any(String),
        apiVersion: expect.any(String),
        endpoints: expect.any(Array),
        authMethod: expect.stringMatching(/^(bearer|header|query)$/),
        requiresOrg: expect.any(Boolean),
        models: expect.any(Array),
        version: expect.stringMatching(/^\d+\.\d+\.\d+/),
        status: 'loaded',
      });
      expect(byId[id].models.length).toBeGreaterThan(0);
    }
    expect(byId.anthropic.authMethod).toBe('header');
    expect(byId.openrouter.canProvisionKeys).toBe(true);
    expect(byId.groq.canProvisionKeys).toBe(false);
    expect(byId['example-llm'].builtIn).toBe(false);
    expect(byId['bad-manifest']).toMatchObject({ status: 'failed', reason: expect.stringMatching(/bad manifest/) });
    expect(byId['missing-entry']).toMatchObject({ status: 'failed', reason: expect.stringMatching(/missing entry/) });
    expect(byId.incompatible).toMatchObject({ status: 'failed', reason: expect.stringMatching(/incompatible/) });
    expect(byId.throwing).toMatchObject({ status: 'failed', reason: expect.stringMatching(/createPlugin\(\) threw/) });
    expect(t.logs.text).toMatch(/Provider plugin throwing was NOT loaded/);
  });

  it('serves requests through the external plugin: a key is verified against its provider', async () => {
    const key = `sk-example_${'a'.repeat(24)}`;
    exampleServer.setKey(key, { kind: 'valid' });
    const ok = await request(t.http)
      .post('/api/admin/providers/example-llm/verify-key')
      .set(auth())
      .send({ key })
      .expect(200);
    expect(ok.body).toMatchObject({ valid: true });
    expect(exampleServer.requests.at(-1)).toMatchObject({ method: 'GET', path: expect.stringMatching(/\/models$/) });

    exampleServer.setKey(key, { kind: 'revoked' });
    const dead = await request(t.http).post('/api/admin/providers/example-llm/verify-key').set(auth()).send({ key });
    expect(dead.body).toMatchObject({ valid: false, errorType: 'invalid_key' });
    expect(JSON.stringify(dead.body)).not.toContain(key);
  });

  it('refuses a key in the wrong format with a message naming the format, without echoing the key', async () => {
    const wrong = 'gsk_this-is-a-groq-key-not-an-openai-one-123456';
    const res = await request(t.http)
      .post('/api/admin/providers/openai/verify-key')
      .set(auth())
      .send({ key: wrong })
      .expect(400);
    expect(res.body.errors).toEqual([{ field: 'key', messages: [expect.stringMatching(/^expected .*sk-/)] }]);
    expect(JSON.stringify(res.body)).not.toContain(wrong);
    expect(t.logs.text).not.toContain(wrong);
    const audit = await t.dataSource.query(
      `SELECT details::text AS d FROM audit_log WHERE action = 'provider.verify-key'`,
    );
    expect(audit.length).toBeGreaterThan(0);
    expect(JSON.stringify(audit)).not.toContain(wrong);
    await request(t.http).post('/api/admin/providers/nope/verify-key').set(auth()).send({ key: 'x' }).expect(404);
  });

  it('lets admins override a price, refuses bad prices and operators, and resets', async () => {
    const before = await request(t.http).get('/api/admin/providers/groq/pricing').set(auth()).expect(200);
    const listed = before.body.prices.find((p: { model: string }) => p.model === 'llama-3.1-8b-instant');
    expect(listed).toMatchObject({ source: 'plugin', listed: true, input: expect.any(Number) });

    const bad = await request(t.http)
      .put('/api/admin/providers/groq/pricing')
      .set(auth())
      .send({ prices: [{ model: 'llama-3.1-8b-instant', input: -1, output: 'free' }] })
      .expect(400);
    expect(bad.body.errors.map((e: { field: string }) => e.field).sort()).toEqual([
      'prices[0].input',
      'prices[0].output',
    ]);

    await request(t.http)
      .put('/api/admin/providers/groq/pricing')
      .set('Authorization', `Bearer ${operatorToken}`)
      .send({ prices: [{ model: 'llama-3.1-8b-instant', input: 1, output: 1 }] })
      .expect(403);

    const set = await request(t.http)
      .put('/api/admin/providers/groq/pricing')
      .set(auth())
      .send({ prices: [{ model: 'llama-3.1-8b-instant', input: 0.07, output: 0.1, cachedInput: 0.02 }] })
      .expect(200);
    expect(set.body.prices.find((p: { model: string }) => p.model === 'llama-3.1-8b-instant')).toMatchObject({
      input: 0.07,
      output: 0.1,
      cachedInput: 0.02,
      source: 'override',
    });

    await request(t.http).delete('/api/admin/providers/groq/pricing/llama-3.1-8b-instant').set(auth()).expect(200);
    const after = await request(t.http).get('/api/admin/providers/groq/pricing').set(auth()).expect(200);
    expect(after.body.prices.find((p: { model: string }) => p.model === 'llama-3.1-8b-instant')).toEqual(listed);
    await request(t.http).delete('/api/admin/providers/groq/pricing/llama-3.1-8b-instant').set(auth()).expect(404);
  });

  it('shows providers and failures in the console, with an editable pricing table for admins', async () => {
    const s = new ConsoleSession(t.http);
    await s.signIn();
    const page = await s.page('/admin/providers');
    for (const name of ['OpenAI', 'Anthropic', 'Groq', 'OpenRouter', 'Example LLM']) expect(page.text).toContain(name);
    expect(page.text).toContain('Failed to load');
    expect(page.text).toContain('createPlugin() threw');

    const detail = await s.page('/admin/providers/openrouter');
    expect(detail.text).toContain('Pricing');
    const row = await s.htmx('post', '/admin/providers/openrouter/pricing', {
      model: 'my/custom-model',
      input: '2',
      output: '4',
    });
    expect(row.status).toBe(200);
    expect(row.text).toMatch(/^<tr id="price-my\/custom-model">/);
    expect(row.text).toContain('not listed by the plugin');

    const invalid = await s.htmx('post', '/admin/providers/openrouter/pricing', {
      model: 'x',
      input: 'lots',
      output: '1',
    });
    expect(invalid.status).toBe(400);
    expect(invalid.text).toContain('field-error');

    const reset = await s.htmx(
      'post',
      `/admin/providers/openrouter/pricing/${encodeURIComponent('my/custom-model')}/reset`,
    );
    expect(reset.status).toBe(200);
    expect(reset.text).toBe('');
  });
});
