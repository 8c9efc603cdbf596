import { createPlugin as anthropic } from '../../plugins/anthropic';
import { createPlugin as groq } from '../../plugins/groq';
import { createPlugin as openai } from '../../plugins/openai';
import { createPlugin as openrouter } from '../../plugins/openrouter';
import type { ProviderPlugin } from '../../src/plugin-system/provider-plugin';
import { startFakeProvider, type FakeProvider, type FakeProviderId } from './index';
import { callThroughPlugin } from './plugin-test-kit';

const PLUGINS: Record<FakeProviderId, (options: { baseUrl: string }) => ProviderPlugin> = {
  openai,
  anthropic,
  groq,
  openrouter,
};
const MODELS_PATH: Record<FakeProviderId, string> = {
  openai: '/models',
  anthropic: '/v1/models',
  groq: '/models',
  openrouter: '/models',
};

describe.each(Object.keys(PLUGINS) as FakeProviderId[])('fake %s provider', (id) => {
  let sut: FakeProvider;
  let plugin: ProviderPlugin;

  beforeAll(async () => {
    sut = await startFakeProvider(id);
    plugin = PLUGINS[id]({ baseUrl: sut.baseUrl });
  });
  afterAll(() => sut.close());
  beforeEach(() => sut.reset());

  it('listens on loopback and mints keys in the real format', () => {
    expect(sut.origin).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(plugin.checkKeyFormat(sut.generateKey())).toEqual({ ok: true });
  });

  it('lists its models to a valid key', async () => {
    const answer = await callThroughPlugin(plugin, sut.generateKey(), MODELS_PATH[id]);

    expect(answer.status).toBe(200);
    expect(answer.json).toMatchObject({
      data: expect.arrayContaining([expect.objectContaining({ id: expect.any(String) })]),
    });
  });

  it('records requests and forgets keys on reset', async () => {
    const key = sut.generateKey();
    await plugin.verify(key);

    expect(sut.requests).toHaveLength(1);
    expect(sut.requests[0]).toMatchObject({ key, status: 200 });

    sut.reset();

    expect(sut.requests).toHaveLength(0);
    expect(await plugin.verify(key)).toMatchObject({ valid: false, errorType: 'invalid_key' });
  });

  it('answers a slow key late but successfully', async () => {
    const started = Date.now();

    const result = await plugin.verify(sut.generateKey({ kind: 'slow', delayMs: 150 }));

    expect(result.valid).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
  });

  it('never answers a hanging key, and still closes promptly', async () => {
    const result = await plugin.verify(sut.generateKey({ kind: 'hang' }), undefined, { timeoutMs: 100 });

    expect(result).toMatchObject({ valid: false, errorType: 'timeout' });
    expect(sut.requests[0].status).toBe(0);
  });
});

describe('fake anthropic provider', () => {
  it('requires the anthropic-version header, as the real API does', async () => {
    const sut = await startFakeProvider('anthropic');
    try {
      const response = await fetch(`${sut.baseUrl}/v1/models`, {
        headers: { 'x-api-key': sut.generateKey() },
      });

      expect(response.status).toBe(400);
      expect(await response.json()).toEqual({
        type: 'error',
        error: { type: 'invalid_request_error', message: 'anthropic-version: header is required' },
      });
    } finally {
      await sut.close();
    }
  });
});

describe('fake openrouter provider', () => {
  it('lists models with per-token prices as strings, without a key', async () => {
    const sut = await startFakeProvider('openrouter');
    try {
      const response = await fetch(`${sut.baseUrl}/models`);
      const body = (await response.json()) as { data: Array<{ pricing: { prompt: unknown } }> };

      expect(response.status).toBe(200);
      expect(body.data[0].pricing.prompt).toEqual(expect.stringMatching(/^0\.\d+$/));
    } finally {
      await sut.close();
    }
  });
});
