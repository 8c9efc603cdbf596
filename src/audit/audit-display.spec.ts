import { detailsSummary, shortUserAgent } from './audit-display';

describe('shortUserAgent', () => {
  it.each([
    [
      'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36',
      'Chrome 131 on Linux',
    ],
    ['Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0', 'Firefox 133 on Windows'],
    [
      'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15',
      'Safari 18 on macOS',
    ],
    [
      'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0',
      'Edge 131 on Windows',
    ],
    ['curl/8.5.0', 'curl 8.5.0'],
    ['node-superagent/3.8.3', 'node-superagent 3.8.3'],
    [null, ''],
  ])('%s → %s', (ua, expected) => {
    expect(shortUserAgent(ua)).toBe(expected);
  });

  it('clips an unknown long agent', () => {
    expect(shortUserAgent('x'.repeat(100))).toHaveLength(40);
  });
});

describe('detailsSummary', () => {
  it('names the fields, at most four', () => {
    expect(detailsSummary({})).toBe('');
    expect(detailsSummary({ a: 1, b: 2 })).toBe('a, b');
    expect(detailsSummary({ a: 1, b: 2, c: 3, d: 4, e: 5, f: 6 })).toBe('a, b, c, d +2');
  });
});
