import fc from 'fast-check';
import { Address6 } from 'ip-address';
import {
  cidr6Contains,
  cidr6Overlap,
  formatCidr6,
  formatIpv6,
  isIpv4Mapped,
  lastOf6,
  parseCidr6,
  parseIpv6,
} from '../../src/net/ipv6.js';

const address6Arb = fc.bigInt({ min: 0n, max: (1n << 128n) - 1n });
/** Addresses with runs of zero groups, where the :: choice matters. */
const sparseAddressArb = fc
  .array(fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: 0, max: 0xffff })), {
    minLength: 8,
    maxLength: 8,
  })
  .map((groups) => groups.reduce((value, group) => (value << 16n) | BigInt(group), 0n));

describe('IPv6 addresses', () => {
  test.each([
    ['2001:db8::1', 0x20010db8000000000000000000000001n],
    ['2001:DB8:0:0:0:0:0:1', 0x20010db8000000000000000000000001n],
    ['::', 0n],
    ['fd87:12::4d', (0xfd870012n << 96n) + 0x4dn],
  ])('parses %s', (text, value) => {
    expect(parseIpv6(text)).toBe(value);
  });

  test.each(['192.0.2.1', 'fe80::1%eth0', '2001:db8::/64', '[2001:db8::1]', '2001:db8:::1', ''])(
    'refuses %j',
    (text) => {
      expect(parseIpv6(text)).toBeUndefined();
    },
  );

  test.each([
    [0n, '::'],
    [1n, '::1'],
    [0x20010db8000000000000000000000001n, '2001:db8::1'],
    // RFC 5952 4.2.2: one zero group is not shortened; 4.2.3: the first of equal runs.
    [0x20010db8000000010001000100010001n, '2001:db8:0:1:1:1:1:1'],
    [0x20010000000000010000000000000001n, '2001:0:0:1::1'],
    [0x20010db8000000000001000000000001n, '2001:db8::1:0:0:1'],
  ])('formats %s as %s', (value, text) => {
    expect(formatIpv6(value)).toBe(text);
  });

  test('formatting agrees with ip-address and parses back, for every address', () => {
    fc.assert(
      fc.property(fc.oneof(address6Arb, sparseAddressArb), (value) => {
        const text = formatIpv6(value);
        expect(text).toBe(Address6.fromBigInt(value).correctForm());
        expect(parseIpv6(text)).toBe(value);
      }),
      { numRuns: 2000 },
    );
  });

  test('ranges: strict parsing, containment, last address, overlap', () => {
    expect(parseCidr6('fd87:12::/64', true)).toEqual({ network: 0xfd870012n << 96n, prefix: 64 });
    expect(parseCidr6('fd87:12::1/64', true)).toBeUndefined();
    expect(parseCidr6('fd87:12::1/64')).toEqual({ network: 0xfd870012n << 96n, prefix: 64 });
    expect(parseCidr6('fd87:12::/129')).toBeUndefined();
    const range = parseCidr6('fd87:12::/112', true);
    if (!range) throw new Error('unparsed');
    expect(formatCidr6(range)).toBe('fd87:12::/112');
    expect(formatIpv6(lastOf6(range))).toBe('fd87:12::ffff');
    expect(cidr6Contains(range, parseIpv6('fd87:12::ffff') ?? 0n)).toBe(true);
    expect(cidr6Contains(range, parseIpv6('fd87:12::1:0') ?? 0n)).toBe(false);
    const wide = parseCidr6('fd87::/16', true);
    if (!wide) throw new Error('unparsed');
    expect(cidr6Overlap(wide, range)).toBe(true);
    expect(cidr6Overlap(range, wide)).toBe(true);
    expect(cidr6Overlap(range, { network: range.network + 0x10000n, prefix: 112 })).toBe(false);
  });

  test('IPv4-mapped addresses are recognized', () => {
    expect(isIpv4Mapped(parseIpv6('::ffff:192.0.2.1') ?? 0n)).toBe(true);
    expect(isIpv4Mapped(parseIpv6('2001:db8::1') ?? 0n)).toBe(false);
  });
});
