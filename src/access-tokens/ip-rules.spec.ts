import { ipInRanges, normalizeIpRule, parseIpRule, type IpRange } from './ip-rules';

describe('normalizeIpRule', () => {
  it.each([
    ['10.0.0.1', '10.0.0.1'],
    ['10.1.2.3/8', '10.0.0.0/8'],
    ['0.0.0.0/0', '0.0.0.0/0'],
    [' 192.168.1.0/24 ', '192.168.1.0/24'],
    ['2001:DB8:0:0::1', '2001:db8::1'],
    ['2001:db8::5/32', '2001:db8::/32'],
    ['::/0', '::/0'],
  ])('accepts %p as %p', (rule, expected) => {
    expect(normalizeIpRule(rule)).toBe(expected);
  });

  it.each([
    '',
    'localhost',
    '10.0.0',
    '127.1',
    '0x7f.0.0.1',
    '010.0.0.1',
    '10.0.0.0/33',
    '10.0.0.0/',
    '2001:db8::/129',
    'fe80::1%eth0',
    '1.2.3.4/8/8',
  ])('refuses %p', (rule) => {
    expect(normalizeIpRule(rule)).toBeNull();
  });
});

describe('ipInRanges', () => {
  const sut = (ip: string, rules: string[]) => ipInRanges(ip, rules.map((r) => parseIpRule(r)!) as IpRange[]);

  it('matches IPv4 addresses and ranges', () => {
    expect(sut('10.200.3.4', ['10.0.0.0/8'])).toBe(true);
    expect(sut('11.0.0.1', ['10.0.0.0/8'])).toBe(false);
    expect(sut('192.168.1.7', ['192.168.1.7'])).toBe(true);
    expect(sut('192.168.1.8', ['192.168.1.7'])).toBe(false);
  });

  it('matches an IPv4 client on a dual-stack socket (IPv4-mapped IPv6) as IPv4', () => {
    expect(sut('::ffff:127.0.0.1', ['127.0.0.0/8'])).toBe(true);
    expect(sut('::ffff:10.0.0.1', ['127.0.0.0/8'])).toBe(false);
    expect(sut('127.0.0.1', ['::ffff:127.0.0.0/104'])).toBe(true);
  });

  it('matches IPv6 ranges and ignores zone ids', () => {
    expect(sut('2001:db8:1::1', ['2001:db8::/32'])).toBe(true);
    expect(sut('2001:db9::1', ['2001:db8::/32'])).toBe(false);
    expect(sut('fe80::1%eth0', ['fe80::/10'])).toBe(true);
    expect(sut('10.0.0.1', ['::/0'])).toBe(false);
  });

  it('matches nothing for an unparseable address', () => {
    expect(sut('', ['0.0.0.0/0'])).toBe(false);
    expect(sut('not-an-ip', ['0.0.0.0/0'])).toBe(false);
  });
});
