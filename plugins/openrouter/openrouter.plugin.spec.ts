import { costOf, ProviderRequestError, type ProviderPlugin } from '../../src/plugin-system/provider-plugin';
import {
  generateOpenRouterKey,
  startFakeProvider,
  type KeyBehaviour,
  type OpenRouterFakeProvider,
} from '../../test/fake-providers';
import { callThroughPlugin, feedTap } from '../../test/fake-providers/plugin-test-kit';
import { createPlugin } from './index';

const CHAT = {
  model: 'openai/gpt-4o-mini',
  messages: [{ role: 'user', content: 'Say hello' }],
};

describe('OpenRouter plugin', () => {
  let fake: OpenRouterFakeProvider;
  let sut: ProviderPlugin;

  beforeAll(async () => {
    fake = await startFakeProvider('openrouter');
  });
  afterAll(() => fake.close());
  beforeEach(() => {
    fake.reset();
    sut = createPlugin({ baseUrl: fake.baseUrl });
  });

  describe('authorize', () => {
    it('adds app attribution unless the client sent its own', () => {
      sut = createPlugin({ referer: 'https://keyward.example', title: 'Keyward' });

      const request = sut.authorize(
        {
          method: 'POST',
          url: new URL('https://x/api/v1/chat/completions'),
          headers: { 'x-openrouter-title': 'Mine' },
        },
        'sk-or-v1-secret',
      );

      expect(request.headers).toEqual({
        Authorization: 'Bearer sk-or-v1-secret',
        'HTTP-Referer': 'https://keyward.example',
        'x-openrouter-title': 'Mine',
      });
    });
  });

  describe('verify', () => {
    it('reports the credit limit from GET /key', async () => {
      const key = fake.generateKey();
      fake.setKeyLimit(key, 25);

      const result = await sut.verify(key);

      expect(result).toEqual({ valid: true, details: { limits: { rateLimit: 20, quotaLimit: 25 } } });
      expect(fake.requests[0]).toMatchObject({ method: 'GET', path: '/api/v1/key' });
    });

    it('says when the key is alive but its credit is used up', async () => {
      const result = await sut.verify(fake.generateKey({ kind: 'out_of_credit' }));

      expect(result).toMatchObject({ valid: true, errorType: 'out_of_credit' });
    });

    it('rejects an unknown key', async () => {
      expect(await sut.verify(generateOpenRouterKey())).toEqual({
        valid: false,
        errorType: 'invalid_key',
        reason: 'User not found.',
      });
    });
  });

  describe('usage', () => {
    it('prefers the cost OpenRouter reports over the pricing table', async () => {
      const key = fake.generateKey({ kind: 'valid', usage: { input: 100, output: 20, cost: 0.0123 } });

      const answer = await callThroughPlugin(sut, key, '/chat/completions', CHAT);
      const usage = sut.usageFrom(answer.json);

      expect(usage).toEqual({
        inputTokens: 100,
        outputTokens: 20,
        totalTokens: 120,
        costUsd: 0.0123,
        model: 'openai/gpt-4o-mini',
      });
      expect(costOf(usage!, sut.pricing, CHAT.model)).toEqual({ cost: 0.0123, unpriced: false });
    });

    it.each([31, 32, 33])(
      'reads usage and cost from the last message of a stream with keep-alive comments (seed %i)',
      async (seed) => {
        const key = fake.generateKey({ kind: 'valid', delayMs: 250, usage: { input: 1000, output: 100 } });
        const answer = await callThroughPlugin(sut, key, '/chat/completions', { ...CHAT, stream: true });

        const tap = feedTap(sut.createStreamTap(), answer.bytes, seed);

        expect(answer.bytes.toString()).toContain(': OPENROUTER PROCESSING');
        // The fake's own price for the model: 1000 × 0.00000015 + 100 × 0.0000006
        expect(tap.result()).toEqual({
          inputTokens: 1000,
          outputTokens: 100,
          totalTokens: 1100,
          costUsd: 0.00021,
          model: 'openai/gpt-4o-mini',
        });
      },
    );

    it('finds no usage in a stream that failed midway', async () => {
      const key = fake.generateKey({ kind: 'valid', midStreamError: { afterChunks: 1 } });
      const answer = await callThroughPlugin(sut, key, '/chat/completions', { ...CHAT, stream: true });

      expect(answer.status).toBe(200);
      expect(answer.bytes.toString()).toContain('"finish_reason":"error"');
      expect(feedTap(sut.createStreamTap(), answer.bytes, 4).result()).toBeUndefined();
    });
  });

  describe('classifyError', () => {
    async function classifyFailure(behaviour: KeyBehaviour) {
      const key = fake.generateKey(behaviour);
      const answer = await callThroughPlugin(sut, key, '/chat/completions', CHAT);
      return sut.classifyError(answer.status, answer.headers, answer.json);
    }

    it.each<[KeyBehaviour, string]>([
      [{ kind: 'revoked' }, 'invalid_key'],
      [{ kind: 'out_of_credit' }, 'out_of_credit'],
      [{ kind: 'out_of_credit', variant: 'spend_limit' }, 'out_of_credit'],
      [{ kind: 'restricted' }, 'bad_request'],
      [{ kind: 'failing', status: 408 }, 'timeout'],
      [{ kind: 'failing', status: 502 }, 'provider_error'],
      [{ kind: 'failing', status: 503 }, 'provider_error'],
    ])('classifies %j as %s', async (behaviour, type) => {
      expect((await classifyFailure(behaviour)).type).toBe(type);
    });

    it('takes the delay of a rate limit from X-RateLimit-Reset', async () => {
      const classified = await classifyFailure({ kind: 'rate_limited', retryAfterSeconds: 10 });

      expect(classified.type).toBe('rate_limited');
      expect(classified.retryAfterMs).toBeGreaterThan(8000);
      expect(classified.retryAfterMs).toBeLessThanOrEqual(10_000);
    });
  });

  describe('rateLimitsFrom', () => {
    it('reads the epoch-millisecond reset', () => {
      const now = 1_700_000_000_000;

      const snapshot = sut.rateLimitsFrom(
        { 'X-RateLimit-Limit': '20', 'X-RateLimit-Remaining': '0', 'X-RateLimit-Reset': String(now + 4000) },
        now,
      );

      expect(snapshot).toEqual({ requests: { limit: 20, remaining: 0, resetMs: 4000 } });
    });
  });

  describe('checkKeyFormat', () => {
    it('accepts sk-or-v1- and 64 hex digits', () => {
      expect(sut.checkKeyFormat(generateOpenRouterKey())).toEqual({ ok: true });
    });

    it('names the format without echoing the key', () => {
      const key = `sk-or-v1-${'G'.repeat(64)}`;

      const result = sut.checkKeyFormat(key);

      expect(result).toEqual({ ok: false, expected: expect.stringContaining('sk-or-v1-') });
      expect(JSON.stringify(result)).not.toContain(key);
    });
  });

  describe('key provisioning', () => {
    it('creates a key with a management key, then deletes it', async () => {
      const management = fake.generateManagementKey();

      const minted = await sut.provisionKey!(management, { name: 'keyward-rotation', limitUsd: 5 });

      expect(sut.checkKeyFormat(minted.secret)).toEqual({ ok: true });
      expect(await sut.verify(minted.secret)).toMatchObject({
        valid: true,
        details: { limits: { quotaLimit: 5 } },
      });
      expect(fake.keyRecord(minted.secret)).toMatchObject({ hash: minted.externalId, name: 'keyward-rotation' });

      await sut.retireKey!(management, minted.externalId);

      expect(fake.retiredKeys).toEqual([minted.secret]);
      expect(await sut.verify(minted.secret)).toMatchObject({ valid: false, errorType: 'invalid_key' });
    });

    it('treats retiring a key that is already gone as done', async () => {
      await expect(sut.retireKey!(fake.generateManagementKey(), 'f'.repeat(64))).resolves.toBeUndefined();
    });

    it('refuses an ordinary key, without echoing it', async () => {
      fake.generateManagementKey();
      const key = fake.generateKey();

      const error: unknown = await sut.provisionKey!(key, { name: 'x' }).catch((caught: unknown) => caught);

      expect(error).toBeInstanceOf(ProviderRequestError);
      expect((error as Error).message).toContain('Only management keys');
      expect((error as Error).message).not.toContain(key.slice(-6));
    });
  });
});
