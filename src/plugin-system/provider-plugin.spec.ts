import {
  baseUrlVariable,
  costOf,
  joinUrl,
  openAiStyleUsage,
  parseDuration,
  parseRetryAfter,
  redactSecrets,
  resolveBaseUrl,
  sendRequest,
  sseUsageTap,
  type PricingTable,
} from './provider-plugin';

const PRICING: PricingTable = {
  'gpt-5': { input: 1.25, output: 10, cachedInput: 0.125 },
  'claude-sonnet-4-5': { input: 3, output: 15, cachedInput: 0.3, cacheWrite: 3.75 },
};

describe('costOf', () => {
  it('charges input and output per million tokens', () => {
    const sut = costOf({ inputTokens: 2_000_000, outputTokens: 500_000, totalTokens: 0 }, PRICING, 'gpt-5');

    expect(sut).toEqual({ cost: 7.5, unpriced: false });
  });

  it('charges cache reads and writes at their own prices', () => {
    const usage = {
      inputTokens: 1_000_000,
      cachedInputTokens: 500_000,
      cacheWriteInputTokens: 100_000,
      outputTokens: 0,
      totalTokens: 1_000_000,
    };

    // 400k × 3 + 500k × 0.3 + 100k × 3.75
    expect(costOf(usage, PRICING, 'claude-sonnet-4-5')).toEqual({ cost: 1.725, unpriced: false });
  });

  it('lets the cost the provider reported win', () => {
    const usage = { inputTokens: 10, outputTokens: 10, totalTokens: 20, costUsd: 0.5 };

    expect(costOf(usage, PRICING, 'unknown')).toEqual({ cost: 0.5, unpriced: false });
  });

  it('finds the alias of a dated snapshot and flags unknown models', () => {
    const usage = { inputTokens: 1_000_000, outputTokens: 0, totalTokens: 1_000_000 };

    expect(costOf(usage, PRICING, 'gpt-5-2025-08-07')).toEqual({ cost: 1.25, unpriced: false });
    expect(costOf(usage, PRICING, 'gpt-6')).toEqual({ cost: 0, unpriced: true });
    expect(costOf(usage, PRICING, 'constructor')).toEqual({ cost: 0, unpriced: true });
  });
});

describe('resolveBaseUrl', () => {
  afterEach(() => {
    delete process.env.KEYWARD_PROVIDER_MY_LLM_BASE_URL;
  });

  it('uses KEYWARD_PROVIDER_<ID>_BASE_URL with dashes as underscores', () => {
    expect(baseUrlVariable('my-llm')).toBe('KEYWARD_PROVIDER_MY_LLM_BASE_URL');
    expect(resolveBaseUrl('my-llm', 'https://api.example/v1/')).toBe('https://api.example/v1');

    process.env.KEYWARD_PROVIDER_MY_LLM_BASE_URL = 'http://127.0.0.1:9/v1';

    expect(resolveBaseUrl('my-llm', 'https://api.example/v1')).toBe('http://127.0.0.1:9/v1');
  });

  it('joins paths without losing the base path', () => {
    expect(joinUrl('https://api.example/v1/', '/models').href).toBe('https://api.example/v1/models');
  });
});

describe('parseDuration', () => {
  it.each([
    ['12ms', 12],
    ['6s', 6000],
    ['1m30s', 90_000],
    ['2m59.56s', 179_560],
    ['1h', 3_600_000],
    ['7', 7000],
  ])('reads %s as %i ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(['', 'soon', '5x', '6s and more'])('refuses %j', (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });
});

describe('parseRetryAfter', () => {
  it('reads seconds and HTTP dates', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');

    expect(parseRetryAfter('20', now)).toBe(20_000);
    expect(parseRetryAfter('Thu, 01 Jan 2026 00:00:05 GMT', now)).toBe(5000);
    expect(parseRetryAfter('whenever', now)).toBeUndefined();
  });
});

describe('redactSecrets', () => {
  it.each([
    'sk-proj-abcdefghijklmnopT3BlbkFJqrstuvwxyz',
    'sk-proj-********************abcd',
    'gsk_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOP',
    'sk-ant-api03-abcdefghijklmnopqrstuvwxyzAA',
  ])('removes %s from provider text', (key) => {
    const sut = redactSecrets(`Incorrect API key provided: ${key}. See the docs.`);

    expect(sut).toBe('Incorrect API key provided: [redacted]. See the docs.');
  });

  it('leaves ordinary text alone', () => {
    expect(redactSecrets('Rate limit reached for gpt-5 on requests per min')).toBe(
      'Rate limit reached for gpt-5 on requests per min',
    );
  });
});

describe('openAiStyleUsage', () => {
  it('reads cached tokens and a reported cost', () => {
    const sut = openAiStyleUsage({
      prompt_tokens: 10,
      completion_tokens: 5,
      total_tokens: 15,
      prompt_tokens_details: { cached_tokens: 4 },
      cost: 0.001,
    });

    expect(sut).toEqual({ inputTokens: 10, outputTokens: 5, totalTokens: 15, cachedInputTokens: 4, costUsd: 0.001 });
  });

  it('returns nothing for null usage (OpenAI content chunks)', () => {
    expect(openAiStyleUsage(null)).toBeUndefined();
  });
});

describe('sseUsageTap', () => {
  it('sees each complete event once, however the bytes are cut', () => {
    const seen: string[] = [];
    const sut = sseUsageTap(
      (event) => seen.push(event.data),
      () => undefined,
    );

    sut.push('data: {"a"');
    sut.push(':1}\n');
    sut.push(Buffer.from('\ndata: 2\n\n'));

    expect(seen).toEqual(['{"a":1}', '2']);
  });
});

describe('sendRequest', () => {
  it('reports an unreachable provider without any header in the message', async () => {
    const request = {
      method: 'GET',
      url: new URL('http://127.0.0.1:9/v1/models?key=sk-should-not-appear'),
      headers: { authorization: 'Bearer sk-secret-value' },
    };

    const error: unknown = await sendRequest(request, undefined, { timeoutMs: 2000 }).catch(
      (caught: unknown) => caught,
    );

    expect(error).toMatchObject({ name: 'ProviderCallError', type: 'provider_error' });
    expect((error as Error).message).toContain('GET http://127.0.0.1:9/v1/models');
    expect((error as Error).message).not.toMatch(/sk-secret|sk-should/);
  });
});
