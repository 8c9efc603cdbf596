import { costOf, type ProviderPlugin } from '../../src/plugin-system/provider-plugin';
import {
  generateAnthropicKey,
  startFakeProvider,
  type AnthropicFakeProvider,
  type KeyBehaviour,
} from '../../test/fake-providers';
import { callThroughPlugin, feedTap } from '../../test/fake-providers/plugin-test-kit';
import { ANTHROPIC_VERSION, createPlugin } from './index';

const MESSAGE = {
  model: 'claude-sonnet-4-5',
  max_tokens: 256,
  messages: [{ role: 'user', content: 'Say hello' }],
};

describe('Anthropic plugin', () => {
  let fake: AnthropicFakeProvider;
  let sut: ProviderPlugin;

  beforeAll(async () => {
    fake = await startFakeProvider('anthropic');
  });
  afterAll(() => fake.close());
  beforeEach(() => {
    fake.reset();
    sut = createPlugin({ baseUrl: fake.baseUrl });
  });

  it('takes its base URL from KEYWARD_PROVIDER_ANTHROPIC_BASE_URL at call time', () => {
    sut = createPlugin();
    process.env.KEYWARD_PROVIDER_ANTHROPIC_BASE_URL = fake.baseUrl;
    try {
      expect(sut.config.baseUrl).toBe(fake.baseUrl);
    } finally {
      delete process.env.KEYWARD_PROVIDER_ANTHROPIC_BASE_URL;
    }
    expect(sut.config.baseUrl).toBe('https://api.anthropic.com');
  });

  describe('authorize', () => {
    it('sends x-api-key and the API version, and no bearer token', () => {
      const request = sut.authorize(
        { method: 'POST', url: new URL('https://x/v1/messages'), headers: { Authorization: 'Bearer client' } },
        'sk-ant-secret',
      );

      expect(request.headers).toEqual({ 'x-api-key': 'sk-ant-secret', 'anthropic-version': ANTHROPIC_VERSION });
    });
  });

  describe('verify', () => {
    it('accepts a live key with its organization and limits', async () => {
      const result = await sut.verify(fake.generateKey());

      expect(result).toMatchObject({
        valid: true,
        details: {
          organization: expect.any(String),
          limits: { rateLimit: 4000, quotaLimit: 2_400_000 },
        },
      });
    });

    it('rejects a revoked key', async () => {
      const key = fake.generateKey({ kind: 'revoked' });

      const result = await sut.verify(key);

      expect(result).toEqual({ valid: false, errorType: 'invalid_key', reason: 'invalid x-api-key' });
    });

    it('calls a key without permission restricted, not dead', async () => {
      const result = await sut.verify(fake.generateKey({ kind: 'restricted' }));

      expect(result).toMatchObject({ valid: true, errorType: 'bad_request' });
    });

    it('reports an overloaded API as the provider failing', async () => {
      const result = await sut.verify(fake.generateKey({ kind: 'failing', status: 529 }));

      expect(result).toMatchObject({ valid: false, errorType: 'provider_error' });
    });
  });

  describe('usage', () => {
    it('counts cache reads as input and prices them at the cached rate', async () => {
      const key = fake.generateKey({ kind: 'valid', usage: { input: 1000, output: 50, cached: 400 } });

      const answer = await callThroughPlugin(sut, key, '/v1/messages', MESSAGE);
      const usage = sut.usageFrom(answer.json);

      expect(answer.json).toMatchObject({ usage: { input_tokens: 600, cache_read_input_tokens: 400 } });
      expect(usage).toEqual({
        inputTokens: 1000,
        cachedInputTokens: 400,
        outputTokens: 50,
        totalTokens: 1050,
        model: 'claude-sonnet-4-5',
      });
      // (600 × 3 + 400 × 0.3 + 50 × 15) / 1e6
      expect(costOf(usage!, sut.pricing, 'claude-sonnet-4-5-20250929')).toEqual({
        cost: 0.00267,
        unpriced: false,
      });
    });

    it.each([11, 12, 13, 14])(
      'keeps the last cumulative output count of a stream fed in random pieces (seed %i)',
      async (seed) => {
        const key = fake.generateKey({
          kind: 'valid',
          usage: { input: 25, output: 9 },
          reply: 'one two three four five six seven eight nine — ünïcödé',
          intermediateMessageDelta: true,
        });
        const answer = await callThroughPlugin(sut, key, '/v1/messages', { ...MESSAGE, stream: true });

        const tap = feedTap(sut.createStreamTap(), answer.bytes, seed);

        // Two message_delta events (a partial count, then 9): adding them up would give more.
        expect(answer.bytes.toString().match(/event: message_delta/g)).toHaveLength(2);
        expect(tap.result()).toEqual({
          inputTokens: 25,
          outputTokens: 9,
          totalTokens: 34,
          model: 'claude-sonnet-4-5',
        });
      },
    );

    it('knows the input of a stream that broke off after message_start', async () => {
      const key = fake.generateKey({
        kind: 'valid',
        usage: { input: 25, output: 9 },
        midStreamError: { afterChunks: 1 },
      });
      const answer = await callThroughPlugin(sut, key, '/v1/messages', { ...MESSAGE, stream: true });

      const tap = feedTap(sut.createStreamTap(), answer.bytes, 3);

      expect(tap.result()).toMatchObject({ inputTokens: 25, outputTokens: 1 });
    });
  });

  describe('classifyError', () => {
    async function classifyFailure(behaviour: KeyBehaviour) {
      const key = fake.generateKey(behaviour);
      const answer = await callThroughPlugin(sut, key, '/v1/messages', MESSAGE);
      return sut.classifyError(answer.status, answer.headers, answer.json);
    }

    it.each<[KeyBehaviour, string]>([
      [{ kind: 'revoked' }, 'invalid_key'],
      [{ kind: 'restricted' }, 'bad_request'],
      [{ kind: 'out_of_credit' }, 'out_of_credit'],
      [{ kind: 'out_of_credit', variant: 'credit_balance' }, 'out_of_credit'],
      [{ kind: 'out_of_credit', variant: 'spend_limit' }, 'out_of_credit'],
      [{ kind: 'failing', status: 500 }, 'provider_error'],
      [{ kind: 'failing', status: 529 }, 'provider_error'],
      [{ kind: 'failing', status: 504 }, 'timeout'],
    ])('classifies %j as %s', async (behaviour, type) => {
      expect((await classifyFailure(behaviour)).type).toBe(type);
    });

    it('takes the delay of a rate limit from retry-after', async () => {
      const classified = await classifyFailure({ kind: 'rate_limited', retryAfterSeconds: 12 });

      expect(classified).toMatchObject({ type: 'rate_limited', retryAfterMs: 12_000 });
    });

    it('keeps a malformed request a bad request', () => {
      const body = { type: 'error', error: { type: 'invalid_request_error', message: 'max_tokens: Field required' } };

      expect(sut.classifyError(400, {}, body)).toEqual({
        type: 'bad_request',
        message: 'max_tokens: Field required',
      });
    });
  });

  describe('rateLimitsFrom', () => {
    it('turns RFC 3339 resets into milliseconds from now', () => {
      const now = Date.parse('2026-01-01T00:00:00Z');

      const snapshot = sut.rateLimitsFrom(
        {
          'anthropic-ratelimit-requests-limit': '50',
          'anthropic-ratelimit-requests-remaining': '49',
          'anthropic-ratelimit-requests-reset': '2026-01-01T00:00:01Z',
          'anthropic-ratelimit-output-tokens-limit': '8000',
          'anthropic-ratelimit-output-tokens-reset': '2026-01-01T00:01:00Z',
          'retry-after': '1',
        },
        now,
      );

      expect(snapshot).toEqual({
        requests: { limit: 50, remaining: 49, resetMs: 1000 },
        outputTokens: { limit: 8000, resetMs: 60_000 },
        retryAfterMs: 1000,
      });
    });

    it('reads the headers of a real rate-limited answer', async () => {
      const key = fake.generateKey({ kind: 'rate_limited', retryAfterSeconds: 30 });
      const answer = await callThroughPlugin(sut, key, '/v1/messages', MESSAGE);

      const snapshot = sut.rateLimitsFrom(answer.headers);

      expect(snapshot.requests).toMatchObject({ limit: 4000, remaining: 0 });
      expect(snapshot.requests?.resetMs).toBeGreaterThan(28_000);
      expect(snapshot.retryAfterMs).toBe(30_000);
    });
  });

  describe('checkKeyFormat', () => {
    it('accepts API and admin keys', () => {
      expect(sut.checkKeyFormat(generateAnthropicKey())).toEqual({ ok: true });
      expect(sut.checkKeyFormat(generateAnthropicKey('admin01'))).toEqual({ ok: true });
    });

    it('names the format without echoing the key', () => {
      const key = `sk-ant-api03-${'x'.repeat(40)}`; // no AA at the end

      const result = sut.checkKeyFormat(key);

      expect(result).toEqual({ ok: false, expected: expect.stringContaining('sk-ant-api03-') });
      expect(JSON.stringify(result)).not.toContain(key);
    });
  });

  describe('retireKey', () => {
    it('switches a key off through the admin API', async () => {
      const admin = fake.generateAdminKey();
      const key = fake.generateKey();

      await sut.retireKey!(admin, fake.apiKeyId(key));

      expect(fake.apiKeyStatus(key)).toBe('inactive');
      expect(await sut.verify(key)).toMatchObject({ valid: false, errorType: 'invalid_key' });
    });
  });
});
