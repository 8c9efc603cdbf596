import { costOf, type ProviderPlugin } from '../../src/plugin-system/provider-plugin';
import {
  generateGroqKey,
  startFakeProvider,
  type GroqFakeProvider,
  type KeyBehaviour,
} from '../../test/fake-providers';
import { callThroughPlugin, feedTap } from '../../test/fake-providers/plugin-test-kit';
import { createPlugin } from './index';

const CHAT = {
  model: 'llama-3.3-70b-versatile',
  messages: [{ role: 'user', content: 'Say hello' }],
};

describe('Groq plugin', () => {
  let fake: GroqFakeProvider;
  let sut: ProviderPlugin;

  beforeAll(async () => {
    fake = await startFakeProvider('groq');
  });
  afterAll(() => fake.close());
  beforeEach(() => {
    fake.reset();
    sut = createPlugin({ baseUrl: fake.baseUrl });
  });

  it('has no key-management API to offer', () => {
    expect(sut.provisionKey).toBeUndefined();
    expect(sut.retireKey).toBeUndefined();
  });

  describe('verify', () => {
    it('accepts a live key', async () => {
      expect(await sut.verify(fake.generateKey())).toEqual({ valid: true });
      expect(fake.requests[0]).toMatchObject({ method: 'GET', path: '/openai/v1/models' });
    });

    it('rejects an unknown key', async () => {
      expect(await sut.verify(generateGroqKey())).toEqual({
        valid: false,
        errorType: 'invalid_key',
        reason: 'Invalid API Key',
      });
    });

    it('treats a rate-limited key as valid', async () => {
      const result = await sut.verify(fake.generateKey({ kind: 'rate_limited' }));

      expect(result).toMatchObject({ valid: true, errorType: 'rate_limited' });
    });
  });

  describe('usage', () => {
    it('reads the usage of a JSON answer and prices it', async () => {
      const key = fake.generateKey({ kind: 'valid', usage: { input: 2_000_000, output: 1_000_000 } });

      const answer = await callThroughPlugin(sut, key, '/chat/completions', CHAT);
      const usage = sut.usageFrom(answer.json);

      expect(usage).toEqual({
        inputTokens: 2_000_000,
        outputTokens: 1_000_000,
        totalTokens: 3_000_000,
        model: 'llama-3.3-70b-versatile',
      });
      expect(costOf(usage!, sut.pricing, CHAT.model)).toEqual({ cost: 1.97, unpriced: false });
    });

    it.each([21, 22, 23])('finds x_groq.usage in a stream fed in random pieces (seed %i)', async (seed) => {
      const key = fake.generateKey({ kind: 'valid', usage: { input: 31, output: 4 } });
      const answer = await callThroughPlugin(sut, key, '/chat/completions', { ...CHAT, stream: true });

      const tap = feedTap(sut.createStreamTap(), answer.bytes, seed);

      expect(answer.bytes.toString()).toContain('"x_groq":{"id"');
      expect(tap.result()).toEqual({
        inputTokens: 31,
        outputTokens: 4,
        totalTokens: 35,
        model: 'llama-3.3-70b-versatile',
      });
    });

    it('leaves streaming requests unchanged: Groq always reports usage', () => {
      expect(sut.prepareStreamingRequest).toBeUndefined();
    });

    it('reports an unknown model as unpriced', () => {
      const usage = { inputTokens: 10, outputTokens: 10, totalTokens: 20 };

      expect(costOf(usage, sut.pricing, 'mystery-model')).toEqual({ cost: 0, unpriced: true });
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
      [{ kind: 'failing', status: 498 }, 'provider_error'],
      [{ kind: 'failing', status: 503 }, 'provider_error'],
    ])('classifies %j as %s', async (behaviour, type) => {
      expect((await classifyFailure(behaviour)).type).toBe(type);
    });

    it('takes the delay of a rate limit from retry-after', async () => {
      const classified = await classifyFailure({ kind: 'rate_limited', retryAfterSeconds: 2 });

      expect(classified).toMatchObject({ type: 'rate_limited', retryAfterMs: 2000 });
      expect(classified.message).toContain('requests per day');
    });

    it.each([
      [413, 'bad_request'],
      [422, 'bad_request'],
      [404, 'bad_request'],
    ])('classifies a bare %i as %s', (status, type) => {
      expect(sut.classifyError(status, {}, 'oops').type).toBe(type);
    });
  });

  describe('rateLimitsFrom', () => {
    it('reads requests per day and tokens per minute from a real answer', async () => {
      const key = fake.generateKey();
      const answer = await callThroughPlugin(sut, key, '/chat/completions', CHAT);

      expect(sut.rateLimitsFrom(answer.headers)).toEqual({
        requests: { limit: 14_400, remaining: 14_399, resetMs: 179_560 },
        tokens: { limit: 6000, remaining: 6000, resetMs: 7660 },
      });
    });
  });

  describe('checkKeyFormat', () => {
    it('accepts gsk_ and 52 letters and digits', () => {
      expect(sut.checkKeyFormat(generateGroqKey())).toEqual({ ok: true });
    });

    it.each([`gsk_${'a'.repeat(51)}`, `gsk_${'a'.repeat(51)}-`, `sk_${'a'.repeat(52)}`])(
      'names the format without echoing %j',
      (key) => {
        const result = sut.checkKeyFormat(key);

        expect(result).toEqual({ ok: false, expected: expect.stringContaining('gsk_') });
        expect(JSON.stringify(result)).not.toContain(key);
      },
    );
  });
});
