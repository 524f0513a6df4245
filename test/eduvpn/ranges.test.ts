import fc from 'fast-check';
import type { ClientPool } from '../../src/eduvpn/pool.js';
import { checkNoOverlap, checkUniqueProfileIds } from '../../src/eduvpn/profile-checks.js';
import {
  isValidProcessCount,
  makePool,
  parseRange6,
  splitRange4,
  splitRange6,
} from '../../src/eduvpn/ranges.js';
import { TnatError } from '../../src/errors.js';
import { broadcastOf, formatCidr4, parseCidr4, type Cidr4 } from '../../src/net/ipv4.js';
import { sourceErrorOf } from './pool-helpers.js';

const where = { file: 'f', line: 1 };

function cidr(text: string): Cidr4 {
  const range = parseCidr4(text, true);
  if (!range) throw new Error(`test setup: ${text}`);
  return range;
}

describe('process counts', () => {
  it.each([
    [0, false],
    [1, true],
    [2, true],
    [3, false],
    [48, false],
    [64, true],
    [128, false],
  ])('%i processes valid: %s', (count, valid) => {
    expect(isValidProcessCount(count)).toBe(valid);
  });
});

describe('splitRange4', () => {
  it.each([
    ['10.0.0.0/24', 1, ['10.0.0.0/24']],
    ['10.0.0.0/24', 2, ['10.0.0.0/25', '10.0.0.128/25']],
    ['10.0.0.0/28', 4, ['10.0.0.0/30', '10.0.0.4/30', '10.0.0.8/30', '10.0.0.12/30']],
    ['172.16.0.0/12', 64, ['172.16.0.0/18', '172.16.64.0/18']],
  ])('%s into %i', (range, count, firstSubnets) => {
    const subnets = splitRange4(cidr(range), count, 'r', where);
    expect(subnets).toHaveLength(count);
    expect(subnets.slice(0, firstSubnets.length).map(formatCidr4)).toEqual(firstSubnets);
    // The subnets tile the range exactly.
    expect(subnets[0]?.network).toBe(cidr(range).network);
    expect(broadcastOf(subnets.at(-1) ?? cidr(range))).toBe(broadcastOf(cidr(range)));
  });

  it('refuses subnets of fewer than 4 addresses', () => {
    const error = sourceErrorOf(() =>
      splitRange4(cidr('10.0.0.0/28'), 8, "oRangeFour of profile 'a'", where),
    );
    expect(error.message).toBe(
      "f:1: oRangeFour of profile 'a' 10.0.0.0/28 is too small for 8 OpenVPN processes: each needs a " +
        'subnet of at least 4 addresses, so use a /27 or larger, or fewer ports',
    );
  });
});

describe('splitRange6', () => {
  it('gives each process the next /112 of the range', () => {
    const range = parseRange6('fd00:4242:4242:4242::/64', 'r', where);
    expect(splitRange6(range, 4, 'r', where)).toEqual([
      'fd00:4242:4242:4242::/112',
      'fd00:4242:4242:4242::1:0/112',
      'fd00:4242:4242:4242::2:0/112',
      'fd00:4242:4242:4242::3:0/112',
    ]);
  });

  it('clears host bits the way the portal does', () => {
    expect(splitRange6(parseRange6('fd00::1234/64', 'r', where), 1, 'r', where)).toEqual([
      'fd00::/112',
    ]);
  });
});

function pool(profileId: string, range: string, line: number): ClientPool {
  return makePool(profileId, 'wireguard', cidr(range), { file: 'f', line });
}

describe('checkNoOverlap', () => {
  it('accepts adjacent ranges', () => {
    expect(() => {
      checkNoOverlap([
        pool('a', '10.0.0.0/25', 1),
        pool('b', '10.0.0.128/25', 2),
        pool('c', '10.0.1.0/24', 3),
      ]);
    }).not.toThrow();
  });

  it('finds a small range inside a big one written before it, even with others in between', () => {
    const pools = [
      pool('big', '10.0.0.0/16', 1),
      pool('mid', '10.0.0.0/17', 2),
      pool('late', '10.0.200.0/24', 3),
    ];
    const error = sourceErrorOf(() => {
      checkNoOverlap(pools);
    });
    expect(error.where).toEqual({ file: 'f', line: 2 });
    expect(error.message).toMatch(
      /10\.0\.0\.0\/17 \(WireGuard of profile 'mid', f:2\) overlaps 10\.0\.0\.0\/16 \(WireGuard of profile 'big', f:1\)/,
    );
  });

  it('throws exactly when two pools share an address', () => {
    const ranges = fc.array(
      fc.record({
        octet: fc.integer({ min: 0, max: 15 }),
        prefix: fc.integer({ min: 20, max: 30 }),
      }),
      { maxLength: 8 },
    );
    fc.assert(
      fc.property(ranges, (specs) => {
        const pools = specs.map(({ octet, prefix }, index) => {
          const network = (0x0a000000 + octet * 4096) >>> 0;
          return makePool(
            `p${index}`,
            'openvpn',
            { network: network & ~(2 ** (32 - prefix) - 1), prefix },
            { file: 'f', line: index + 1 },
          );
        });
        const overlapping = pools.some((a, i) =>
          pools.some(
            (b, j) =>
              i < j &&
              a.subnet4.network <= broadcastOf(b.subnet4) &&
              b.subnet4.network <= broadcastOf(a.subnet4),
          ),
        );
        let thrown = false;
        try {
          checkNoOverlap(pools);
        } catch (error) {
          thrown = error instanceof TnatError;
        }
        expect(thrown).toBe(overlapping);
      }),
    );
  });
});

describe('checkUniqueProfileIds', () => {
  it('points at the second use and names the first', () => {
    const error = sourceErrorOf(() => {
      checkUniqueProfileIds([
        { profileId: 'a', where: { file: 'x.json', line: 2 } },
        { profileId: 'b', where: { file: 'y.json', line: 2 } },
        { profileId: 'a', where: { file: 'z.json', line: 3 } },
      ]);
    });
    expect(error.message).toBe(
      "z.json:3: profile id 'a' is also used at x.json:2: give every profile its own profileId",
    );
  });
});
