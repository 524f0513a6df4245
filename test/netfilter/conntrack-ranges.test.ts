import fc from 'fast-check';
import { cidrContains, parseIpv4 } from '../../src/net/ipv4.js';
import {
  conntrackPrefixes,
  maskOf,
  rangeToPrefixes,
} from '../../src/netfilter/conntrack-ranges.js';

const ip = (text: string): number => parseIpv4(text) ?? Number.NaN;

describe('rangeToPrefixes', () => {
  test.each([
    ['10.0.0.0', '10.0.255.255', ['10.0.0.0/16']],
    ['10.0.0.2', '10.0.0.7', ['10.0.0.2/31', '10.0.0.4/30']],
    ['10.0.0.5', '10.0.0.5', ['10.0.0.5/32']],
  ])('%s-%s', (low, high, expected) => {
    const prefixes = rangeToPrefixes(ip(low), ip(high)).map(
      (p) =>
        `${[p.network >>> 24, (p.network >>> 16) & 255, (p.network >>> 8) & 255, p.network & 255].join('.')}/${p.prefix}`,
    );
    expect(prefixes).toEqual(expected);
  });

  test('masks', () => {
    expect(maskOf({ network: 0, prefix: 20 })).toBe('255.255.240.0');
    expect(maskOf({ network: 0, prefix: 32 })).toBe('255.255.255.255');
  });
});

describe('conntrackPrefixes', () => {
  test('a whole /16 that changed is one handful of prefixes, not 65 534 deletes', () => {
    const changed = Array.from({ length: 65534 }, (_, i) => ip('10.42.0.1') + i);
    expect(conntrackPrefixes(changed, []).length).toBeLessThanOrEqual(32);
  });

  test('covers every changed client and never a kept one', () => {
    const base = ip('10.42.0.0');
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 1023 }), fc.boolean()), { maxLength: 300 }),
        (entries) => {
          const changed = new Set<number>();
          const kept = new Set<number>();
          for (const [offset, isChanged] of entries) {
            if (changed.has(base + offset) || kept.has(base + offset)) continue;
            (isChanged ? changed : kept).add(base + offset);
          }
          const prefixes = conntrackPrefixes(changed, kept);
          for (const client of changed)
            expect(prefixes.some((p) => cidrContains(p, client))).toBe(true);
          for (const client of kept)
            expect(prefixes.some((p) => cidrContains(p, client))).toBe(false);
        },
      ),
      { numRuns: 300 },
    );
  });
});
