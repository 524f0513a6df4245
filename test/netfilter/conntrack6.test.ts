import fc from 'fast-check';
import { conntrackPrefixes6, rangeToPrefixes6 } from '../../src/netfilter/conntrack6.js';
import { formatCidr6, formatIpv6, lastOf6, type Cidr6 } from '../../src/net/ipv6.js';

const covered = (prefixes: readonly Cidr6[]): bigint[] =>
  prefixes.flatMap((prefix) => {
    const addresses: bigint[] = [];
    for (let a = prefix.network; a <= lastOf6(prefix); a++) addresses.push(a);
    return addresses;
  });

describe('conntrack prefixes for IPv6 clients', () => {
  test.each([
    [['fd0a:2a::2', 'fd0a:2a::3'], ['fd0a:2a::2/127']],
    [
      ['fd0a:2a::2', 'fd0a:2a::3', 'fd0a:2a::4', 'fd0a:2a::5'],
      ['fd0a:2a::2/127', 'fd0a:2a::4/127'],
    ],
    // Not consecutive: never joined across the address between them.
    [
      ['fd0a:2a::2', 'fd0a:2a::4'],
      ['fd0a:2a::2/128', 'fd0a:2a::4/128'],
    ],
    // A range (prefix mode) stays as it is.
    [
      ['fd42::/112', 'fd43::7'],
      ['fd42::/112', 'fd43::7/128'],
    ],
  ])('%j -> %j', (sources, expected) => {
    expect(conntrackPrefixes6(sources).map(formatCidr6)).toEqual(expected);
  });

  test('the prefixes cover exactly the changed addresses, never another', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 0, max: 300 }), { maxLength: 60 }),
        (offsets) => {
          const base = 0xfd0a002a000000000000000000000000n;
          const changed = offsets.map((offset) => base + BigInt(offset));
          const prefixes = conntrackPrefixes6(changed.map(formatIpv6));
          expect(covered(prefixes).sort()).toEqual([...changed].sort());
        },
      ),
    );
  });

  test('a run is split into aligned prefixes', () => {
    expect(rangeToPrefixes6(2n, 9n).map(formatCidr6)).toEqual(['::2/127', '::4/126', '::8/127']);
  });
});
