import ipaddr from 'ipaddr.js';

type Address = ipaddr.IPv4 | ipaddr.IPv6;
/** A parsed rule: network address and prefix length (a single address is a /32 or /128). */
export type IpRange = [Address, number];

/**
 * The canonical form of an allow rule — an IPv4 or IPv6 address, or a CIDR range such as
 * `10.0.0.0/8` or `2001:db8::/32` — or null when the text is neither. A range is stored by its
 * network address (`10.1.2.3/8` becomes `10.0.0.0/8`), an IPv6 address in its RFC 5952 form.
 * Only plain dotted-quad IPv4 is accepted (not `127.1` or `0x7f.0.0.1`), and no zone ids.
 */
export function normalizeIpRule(rule: string): string | null {
  const value = rule.trim();
  if (value === '' || value.includes('%')) return null;
  if (value.includes('/')) {
    const [, bitsText] = value.split('/');
    if (!/^\d{1,3}$/.test(bitsText)) return null;
    if (ipaddr.IPv4.isValidCIDRFourPartDecimal(value)) {
      return `${ipaddr.IPv4.networkAddressFromCIDR(value).toString()}/${Number(bitsText)}`;
    }
    if (ipaddr.IPv6.isValidCIDR(value)) {
      return `${ipaddr.IPv6.networkAddressFromCIDR(value).toRFC5952String()}/${Number(bitsText)}`;
    }
    return null;
  }
  if (ipaddr.IPv4.isValidFourPartDecimal(value)) return ipaddr.IPv4.parse(value).toString();
  if (ipaddr.IPv6.isValid(value)) return ipaddr.IPv6.parse(value).toRFC5952String();
  return null;
}

/** Parses a normalized rule; an IPv4-mapped IPv6 range (`::ffff:10.0.0.0/104`) becomes IPv4. */
export function parseIpRule(rule: string): IpRange | null {
  const normalized = normalizeIpRule(rule);
  if (!normalized) return null;
  const [address, bits] = normalized.includes('/')
    ? ipaddr.parseCIDR(normalized)
    : ([ipaddr.parse(normalized), normalized.includes(':') ? 128 : 32] as IpRange);
  if (address.kind() === 'ipv6' && (address as ipaddr.IPv6).isIPv4MappedAddress() && bits >= 96) {
    return [(address as ipaddr.IPv6).toIPv4Address(), bits - 96];
  }
  return [address, bits];
}

/**
 * Whether a client address falls in one of the ranges. The address is taken as Node reports it:
 * an IPv4 client on a dual-stack socket (`::ffff:127.0.0.1`) is matched as IPv4, and a zone id
 * (`fe80::1%eth0`) is ignored. Anything unparseable matches nothing.
 */
export function ipInRanges(ip: string, ranges: readonly IpRange[]): boolean {
  const zone = ip.indexOf('%');
  const text = zone === -1 ? ip : ip.slice(0, zone);
  if (!ipaddr.isValid(text)) return false;
  let address: Address;
  try {
    address = ipaddr.process(text);
  } catch {
    return false;
  }
  for (const [network, bits] of ranges) {
    if (network.kind() === address.kind() && address.match(network, bits)) return true;
  }
  return false;
}
