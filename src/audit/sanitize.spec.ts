import { AUDIT_LIMITS, cleanDetails, cleanText } from './sanitize';

describe('audit sanitising', () => {
  it('replaces lone surrogates and NUL, keeps real pairs', () => {
    expect(cleanText('a\ud800b\udfffc\u0000d')).toBe('a\ufffdb\ufffdc\ufffdd');
    expect(cleanText('emoji 😀')).toBe('emoji 😀');
  });

  it('clips long text without splitting a pair', () => {
    const text = `${'x'.repeat(AUDIT_LIMITS.string - 1)}😀tail`;
    const clipped = cleanText(text);
    expect(clipped.endsWith('…')).toBe(true);
    expect(clipped).not.toMatch(/[\ud800-\udbff]…$/);
  });

  it('drops secret fields, caps depth, breadth and size, and makes numbers JSON-safe', () => {
    const deep: Record<string, unknown> = {};
    let cursor = deep;
    for (let i = 0; i < 20; i++) cursor = (cursor.next = {}) as Record<string, unknown>;
    const cleaned = cleanDetails(
      {
        password: 'p',
        name: 'n\ud800',
        big: Number.POSITIVE_INFINITY,
        list: Array(80).fill(1),
        deep,
        when: new Date(0),
      },
      (field) => field !== 'password',
    );
    expect(cleaned).not.toHaveProperty('password');
    expect(cleaned.name).toBe('n\ufffd');
    expect(cleaned.big).toBe('Infinity');
    expect((cleaned.list as unknown[]).at(-1)).toBe('[30 more]');
    expect(JSON.stringify(cleaned)).toContain('[nested too deep]');
    expect(cleaned.when).toBe('1970-01-01T00:00:00.000Z');
    expect(cleanDetails({ huge: Array(50).fill('y'.repeat(400)) })).toMatchObject({ truncated: true });
  });
});
