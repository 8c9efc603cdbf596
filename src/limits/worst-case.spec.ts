import { periodBegin, periodEnd, rolled } from './period';
import { estimateInputTokens, IMAGE_TOKENS, worstCase } from './worst-case';

const pricing = {
  'gpt-4o-mini': { input: 0.15, output: 0.6 },
  'claude-sonnet-4-5': { input: 3, output: 15, cachedInput: 0.3, cacheWrite: 3.75 },
};

describe('worstCase', () => {
  it('counts the body at 4 characters a token, rounded up, and max_tokens as output', () => {
    const body = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x'.repeat(100) }], max_tokens: 50 };
    const chars = JSON.stringify(body).length;
    const w = worstCase({ body, model: 'gpt-4o-mini', pricing, defaultMaxOutputTokens: 4096 });
    expect(w.tokens).toBe(Math.ceil(chars / 4) + 50);
    expect(w.requests).toBe(1);
    expect(w.unpriced).toBe(false);
    expect(w.usd).toBeCloseTo((Math.ceil(chars / 4) * 0.15 + 50 * 0.6) / 1e6, 12);
  });

  it('takes the largest of max_tokens, max_completion_tokens and max_output_tokens, times n', () => {
    const base = { model: 'gpt-4o-mini', input: 'hi' };
    const out = (extra: object) =>
      worstCase({ body: { ...base, ...extra }, model: 'gpt-4o-mini', pricing, defaultMaxOutputTokens: 4096 }).tokens -
      Math.ceil(JSON.stringify({ ...base, ...extra }).length / 4);
    expect(out({ max_completion_tokens: 300 })).toBe(300);
    expect(out({ max_output_tokens: 700, max_tokens: 20 })).toBe(700);
    expect(out({ max_tokens: 100, n: 3 })).toBe(300);
  });

  it('without a cap, assumes the model maximum from the plugin, else the configured default', () => {
    const body = { model: 'm', input: 'a' };
    const chars = Math.ceil(JSON.stringify(body).length / 4);
    expect(worstCase({ body, model: 'm', defaultMaxOutputTokens: 4096 }).tokens).toBe(chars + 4096);
    expect(worstCase({ body, model: 'm', modelMaxOutputTokens: 64_000, defaultMaxOutputTokens: 4096 }).tokens).toBe(
      chars + 64_000,
    );
    // A cap that is not a positive number is no cap: the provider refuses it anyway.
    expect(worstCase({ body: { ...body, max_tokens: -5 }, model: 'm', defaultMaxOutputTokens: 10 }).tokens).toBe(
      Math.ceil(JSON.stringify({ ...body, max_tokens: -5 }).length / 4) + 10,
    );
  });

  it('counts each image as a fixed allowance, whatever its encoding, and files by their size', () => {
    const image = { type: 'image_url', image_url: { url: `data:image/png;base64,${'A'.repeat(400_000)}` } };
    const body = {
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: [{ type: 'text', text: 'what?' }, image] }],
    };
    const withoutImage = JSON.stringify(body).length - JSON.stringify(image).length + 'null'.length;
    expect(estimateInputTokens(body)).toBe(Math.ceil(withoutImage / 4) + IMAGE_TOKENS);
    const file = { type: 'file', file: { file_data: 'B'.repeat(40_000) } };
    expect(estimateInputTokens({ messages: [{ content: [file] }] })).toBeGreaterThan(10_000);
  });

  it('counts a body that is not JSON by its length, and no output for embeddings', () => {
    expect(estimateInputTokens(undefined, 1001)).toBe(251);
    const w = worstCase({
      body: { model: 'gpt-4o-mini', input: 'abc' },
      endpoint: '/v1/embeddings',
      model: 'gpt-4o-mini',
      pricing,
      defaultMaxOutputTokens: 4096,
    });
    expect(w.tokens).toBe(Math.ceil(JSON.stringify({ model: 'gpt-4o-mini', input: 'abc' }).length / 4));
  });

  it('prices input at the highest input price (cache writes) and flags unpriced models', () => {
    const body = { model: 'claude-sonnet-4-5', max_tokens: 1000, messages: [] };
    const input = Math.ceil(JSON.stringify(body).length / 4);
    const w = worstCase({ body, model: 'claude-sonnet-4-5-20250929', pricing, defaultMaxOutputTokens: 1 });
    expect(w.usd).toBeCloseTo((input * 3.75 + 1000 * 15) / 1e6, 12);

    const unknown = worstCase({ body, model: 'mystery', pricing, defaultMaxOutputTokens: 1 });
    expect(unknown).toMatchObject({ usd: 0, unpriced: true });
    const fallback = worstCase({
      body,
      model: 'mystery',
      pricing,
      defaultMaxOutputTokens: 1,
      unpricedUsdPerMillionTokens: 100,
    });
    expect(fallback.unpriced).toBe(false);
    expect(fallback.usd).toBeCloseTo(((input + 1000) * 100) / 1e6, 12);
  });
});

describe('period math', () => {
  const at = new Date('2026-12-03T08:30:00Z'); // a Thursday

  it('ends days at midnight UTC, weeks on Monday, months on the 1st; lifetime never', () => {
    expect(periodEnd('daily', at)?.toISOString()).toBe('2026-12-04T00:00:00.000Z');
    expect(periodEnd('weekly', at)?.toISOString()).toBe('2026-12-07T00:00:00.000Z');
    expect(periodEnd('monthly', at)?.toISOString()).toBe('2027-01-01T00:00:00.000Z');
    expect(periodEnd('total', at)).toBeNull();
    expect(periodEnd('never', at)).toBeNull();
    expect(periodBegin('weekly', at)?.toISOString()).toBe('2026-11-30T00:00:00.000Z');
    expect(periodEnd('monthly', new Date('2026-12-31T23:59:59Z'))?.toISOString()).toBe('2027-01-01T00:00:00.000Z');
  });

  it('starts a counter whose period ended from zero, with the next reset', () => {
    expect(rolled(500, new Date('2026-12-03T00:00:00Z'), 'daily', at)).toEqual({
      used: 0,
      resetAt: new Date('2026-12-04T00:00:00Z'),
    });
    expect(rolled(500, new Date('2026-12-04T00:00:00Z'), 'daily', at).used).toBe(500);
    expect(rolled(500, null, 'total', at).used).toBe(500);
  });
});
