import { costOf, ProviderRequestError, type ProviderPlugin } from '../../src/plugin-system/provider-plugin';
import { generateOpenAiKey, startFakeProvider, type OpenAiFakeProvider } from '../../test/fake-providers';
import { callThroughPlugin, feedTap, sseEvents } from '../../test/fake-providers/plugin-test-kit';
import { createPlugin, DEFAULT_BASE_URL } from './index';

const CHAT = {
  model: 'gpt-5',
  messages: [{ role: 'user', content: 'Say hello' }],
};

describe('OpenAI plugin', () => {
  let fake: OpenAiFakeProvider;
  let sut: ProviderPlugin;

  beforeAll(async () => {
    fake = await startFakeProvider('openai');
  });
  afterAll(() => fake.close());
  beforeEach(() => {
    fake.reset();
    sut = createPlugin({ baseUrl: fake.baseUrl });
  });

  describe('config', () => {
    afterEach(() => {
      delete process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL;
    });

    it('reads KEYWARD_PROVIDER_OPENAI_BASE_URL when asked, not at import', () => {
      sut = createPlugin();
      expect(sut.config.baseUrl).toBe(DEFAULT_BASE_URL);

      process.env.KEYWARD_PROVIDER_OPENAI_BASE_URL = `${fake.baseUrl}/`;

      expect(sut.config.baseUrl).toBe(fake.baseUrl);
    });

    it('has the spec shape and a price for every model it lists', () => {
      expect(sut.config).toMatchObject({ id: 'openai', authMethod: 'bearer', requiresOrg: false });
      for (const model of sut.config.models) {
        expect(sut.pricing[model]).toBeDefined();
      }
    });
  });

  describe('authorize', () => {
    it('sends the key as a bearer token and the organization and project as headers', () => {
      const request = sut.authorize(
        { method: 'GET', url: new URL('https://x/v1/models'), headers: { authorization: 'old' } },
        'sk-secret',
        'org-abc/proj_def',
      );

      expect(request.headers).toEqual({
        Authorization: 'Bearer sk-secret',
        'OpenAI-Organization': 'org-abc',
        'OpenAI-Project': 'proj_def',
      });
    });
  });

  describe('verify', () => {
    it('accepts a live key and reports its organization', async () => {
      const key = fake.generateKey();

      const result = await sut.verify(key, 'org-keyward');

      expect(result).toEqual({ valid: true, details: { organization: 'org-keyward' } });
      expect(fake.requests[0].headers['openai-organization']).toBe('org-keyward');
    });

    it('rejects a revoked key without repeating any of it', async () => {
      const key = fake.generateKey({ kind: 'revoked' });

      const result = await sut.verify(key);

      expect(result).toMatchObject({ valid: false, errorType: 'invalid_key' });
      expect(result.reason).toContain('Incorrect API key');
      expect(result.reason).not.toContain(key.slice(-4));
    });

    it('treats a restricted key (missing_scope) as alive but restricted', async () => {
      const key = fake.generateKey({ kind: 'restricted' });

      const result = await sut.verify(key);

      expect(result).toMatchObject({ valid: true, errorType: 'bad_request' });
      expect(result.reason).toContain('api.model.read');
    });

    it('says the provider failed rather than the key when OpenAI answers 503', async () => {
      const result = await sut.verify(fake.generateKey({ kind: 'failing', status: 503 }));

      expect(result).toMatchObject({ valid: false, errorType: 'provider_error' });
    });

    it('gives up with a timeout when OpenAI does not answer', async () => {
      const result = await sut.verify(fake.generateKey({ kind: 'hang' }), undefined, {
        timeoutMs: 150,
      });

      expect(result).toMatchObject({ valid: false, errorType: 'timeout' });
    });
  });

  describe('usage', () => {
    it('reads prompt, completion and cached tokens from a JSON answer', async () => {
      const key = fake.generateKey({ kind: 'valid', usage: { input: 1200, output: 300, cached: 200 } });

      const answer = await callThroughPlugin(sut, key, '/chat/completions', CHAT);

      expect(sut.usageFrom(answer.json)).toEqual({
        inputTokens: 1200,
        outputTokens: 300,
        cachedInputTokens: 200,
        totalTokens: 1500,
        model: 'gpt-5',
      });
    });

    it('asks for the usage chunk a client did not ask for, and marks it for dropping', async () => {
      const key = fake.generateKey({ kind: 'valid', usage: { input: 42, output: 7 } });

      const prepared = sut.prepareStreamingRequest!({ ...CHAT, stream: true });
      const answer = await callThroughPlugin(sut, key, '/chat/completions', prepared.body);

      expect(prepared.clientRequestedUsage).toBe(false);
      expect(prepared.body.stream_options).toEqual({ include_usage: true });
      const added = sseEvents(answer.bytes).filter((event) => prepared.isAddedUsageEvent!(event.data));
      expect(added).toHaveLength(1);
      expect(JSON.parse(added[0].data)).toMatchObject({ choices: [], usage: { prompt_tokens: 42 } });
    });

    it('leaves a request alone when the client asked for usage itself', () => {
      const body = { ...CHAT, stream: true, stream_options: { include_usage: true } };

      const prepared = sut.prepareStreamingRequest!(body);

      expect(prepared).toEqual({ body, clientRequestedUsage: true });
    });

    it.each([1, 2, 3, 4, 5])('counts a streamed answer fed in random pieces (seed %i)', async (seed) => {
      const key = fake.generateKey({ kind: 'valid', usage: { input: 42, output: 7, cached: 2 } });
      const prepared = sut.prepareStreamingRequest!({ ...CHAT, stream: true });
      const answer = await callThroughPlugin(sut, key, '/chat/completions', prepared.body);

      const tap = feedTap(sut.createStreamTap(), answer.bytes, seed);

      expect(tap.result()).toEqual({
        inputTokens: 42,
        outputTokens: 7,
        cachedInputTokens: 2,
        totalTokens: 49,
        model: 'gpt-5',
      });
    });

    it('reports nothing for a stream that carried no usage', async () => {
      const key = fake.generateKey();
      const answer = await callThroughPlugin(sut, key, '/chat/completions', { ...CHAT, stream: true });

      expect(feedTap(sut.createStreamTap(), answer.bytes, 9).result()).toBeUndefined();
    });

    it('prices cached input at the cached rate', () => {
      const usage = {
        inputTokens: 1_000_000,
        cachedInputTokens: 200_000,
        outputTokens: 100_000,
        totalTokens: 1_100_000,
      };

      // 800k × 1.25 + 200k × 0.125 + 100k × 10 per million
      expect(costOf(usage, sut.pricing, 'gpt-5-2025-08-07')).toEqual({ cost: 2.025, unpriced: false });
    });
  });

  describe('classifyError', () => {
    async function classifyFailure(behaviour: Parameters<OpenAiFakeProvider['setKey']>[1]) {
      const key = fake.generateKey(behaviour);
      const answer = await callThroughPlugin(sut, key, '/chat/completions', CHAT);
      return { key, classified: sut.classifyError(answer.status, answer.headers, answer.json) };
    }

    it('calls a revoked key invalid and keeps the key out of the message', async () => {
      const { key, classified } = await classifyFailure({ kind: 'revoked' });

      expect(classified.type).toBe('invalid_key');
      expect(classified.message).not.toContain(key.slice(0, 12));
      expect(classified.message).not.toContain(key.slice(-4));
    });

    it('calls a missing scope a refused request, not a dead key', async () => {
      const { classified } = await classifyFailure({ kind: 'restricted' });

      expect(classified.type).toBe('bad_request');
    });

    it('takes the retry delay of a rate limit from retry-after', async () => {
      const { classified } = await classifyFailure({ kind: 'rate_limited', retryAfterSeconds: 7 });

      expect(classified).toMatchObject({ type: 'rate_limited', retryAfterMs: 7000 });
    });

    it.each(['credit_balance', 'spend_limit'] as const)(
      'tells a 429 insufficient_quota (%s) apart from a rate limit',
      async (variant) => {
        const { classified } = await classifyFailure({ kind: 'out_of_credit', variant });

        expect(classified.type).toBe('out_of_credit');
      },
    );

    it.each([500, 503])('calls %i a provider error', async (status) => {
      const { classified } = await classifyFailure({ kind: 'failing', status });

      expect(classified.type).toBe('provider_error');
    });
  });

  describe('rateLimitsFrom', () => {
    it('reads limits, remaining and Go-style resets from a real answer', async () => {
      const key = fake.generateKey();
      const answer = await callThroughPlugin(sut, key, '/chat/completions', CHAT);

      expect(sut.rateLimitsFrom(answer.headers)).toEqual({
        requests: { limit: 5000, remaining: 4999, resetMs: 12 },
        tokens: { limit: 2_000_000, remaining: 2_000_000, resetMs: 6000 },
      });
    });

    it('understands minutes and fractions of seconds', () => {
      const snapshot = sut.rateLimitsFrom({
        'x-ratelimit-reset-requests': '1m30s',
        'x-ratelimit-reset-tokens': '2m59.56s',
        'retry-after': '3',
      });

      expect(snapshot).toEqual({
        requests: { resetMs: 90_000 },
        tokens: { resetMs: 179_560 },
        retryAfterMs: 3000,
      });
    });
  });

  describe('checkKeyFormat', () => {
    it.each(['proj', 'svcacct', 'admin'] as const)('accepts an sk-%s- key', (kind) => {
      expect(sut.checkKeyFormat(generateOpenAiKey(kind))).toEqual({ ok: true });
    });

    it.each([
      'sk-ant-api03-abcdefghijklmnopqrstuvwxyzAA',
      'sk-proj-abcdefghijklmnopqrstuvwxyz0123456789',
      ' sk-proj-abcT3BlbkFJdef',
    ])('names the expected format without echoing %j', (key) => {
      const result = sut.checkKeyFormat(key);

      expect(result).toEqual({ ok: false, expected: expect.stringContaining('sk-proj-') });
      expect(JSON.stringify(result)).not.toContain(key.trim());
    });
  });

  describe('key provisioning', () => {
    it('mints a service-account key that works and retires it again', async () => {
      const admin = fake.generateAdminKey();

      const minted = await sut.provisionKey!(admin, { name: 'keyward-rotation', projectId: 'proj_abc' });

      expect(sut.checkKeyFormat(minted.secret)).toEqual({ ok: true });
      expect(minted.externalId).toMatch(/^proj_abc\/svc_acct_/);
      expect(await sut.verify(minted.secret)).toMatchObject({ valid: true });

      await sut.retireKey!(admin, minted.externalId);

      expect(fake.retiredKeys).toEqual([minted.secret]);
      expect(await sut.verify(minted.secret)).toMatchObject({ valid: false, errorType: 'invalid_key' });
    });

    it('refuses with a classified error, never the key, when the key is no admin key', async () => {
      fake.generateAdminKey();
      const projectKey = fake.generateKey();

      const error: unknown = await sut.provisionKey!(projectKey, { name: 'x', projectId: 'proj_abc' }).catch(
        (caught: unknown) => caught,
      );

      expect(error).toBeInstanceOf(ProviderRequestError);
      expect((error as Error).message).toMatch(/HTTP 401 \(bad_request\).*Missing scopes/);
      expect((error as Error).message).not.toContain(projectKey.slice(-4));
    });

    it('needs a project to put the service account in', async () => {
      await expect(sut.provisionKey!(fake.generateAdminKey(), { name: 'x' })).rejects.toThrow(/projectId/);
    });
  });
});
