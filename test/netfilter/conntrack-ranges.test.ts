import fc from 'fast-check';
import {
  broadcastOf,
  cidrContains,
  parseCidr4,
  parseIpv4,
  type Cidr4,
} from '../../src/net/ipv4.js';
import {
  conntrackPrefixes,
  maskOf,
  rangeToPrefixes,
} from '../../src/netfilter/conntrack-ranges.js';

const ip = (text: string): number => parseIpv4(text) ?? Number.NaN;
const cidr = (text: string): Cidr4 => parseCidr4(text, true) ?? { network: 0, prefix: 0 };
const show = (p: Cidr4): string =>
  `${[p.network >>> 24, (p.network >>> 16) & 255, (p.network >>> 8) & 255, p.network & 255].join('.')}/${p.prefix}`;
/** The client addresses of an eduVPN subnet: network+2 .. broadcast-1. */
const clientsOf = (subnet: Cidr4): number[] => {
  const result: number[] = [];
  for (let a = subnet.network + 2; a < broadcastOf(subnet); a++) result.push(a);
  return result;
};
const lastOf = (p: Cidr4): number => p.network + 2 ** (32 - p.prefix) - 1;

describe('rangeToPrefixes', () => {
  test.each([
    ['10.0.0.0', '10.0.255.255', ['10.0.0.0/16']],
    ['10.0.0.2', '10.0.0.7', ['10.0.0.2/31', '10.0.0.4/30']],
    ['10.0.0.5', '10.0.0.5', ['10.0.0.5/32']],
  ])('%s-%s', (low, high, expected) => {
    expect(rangeToPrefixes(ip(low), ip(high)).map(show)).toEqual(expected);
  });

  test('masks', () => {
    expect(maskOf({ network: 0, prefix: 20 })).toBe('255.255.240.0');
    expect(maskOf({ network: 0, prefix: 32 })).toBe('255.255.255.255');
  });
});

describe('conntrackPrefixes', () => {
  test('a whole /16 that changed is one handful of prefixes, not 65 534 deletes', () => {
    const changed = clientsOf(cidr('10.42.0.0/16'));
    expect(conntrackPrefixes(changed, []).length).toBeLessThanOrEqual(32);
  });

  test('a /16 split over eight OpenVPN processes and re-blocked is still a handful', () => {
    const changed = [0, 32, 64, 96, 128, 160, 192, 224].flatMap((third) =>
      clientsOf(cidr(`10.42.${third}.0/19`)),
    );
    const prefixes = conntrackPrefixes(changed, []);
    expect(prefixes.length).toBeLessThanOrEqual(32);
    // Only the addresses of the /16 itself, and neither its network nor its server address.
    for (const p of prefixes) {
      expect(cidrContains(cidr('10.42.0.0/16'), p.network)).toBe(true);
      expect(cidrContains(cidr('10.42.0.0/16'), lastOf(p))).toBe(true);
    }
    expect(prefixes.some((p) => cidrContains(p, ip('10.42.0.1')))).toBe(false);
  });

  test('two removed profiles far apart: no prefix reaches the hosts between them (issue 11)', () => {
    const a = cidr('10.50.0.0/25');
    const b = cidr('172.20.0.0/24');
    const prefixes = conntrackPrefixes([...clientsOf(b), ...clientsOf(a)], []);
    for (const stranger of ['93.184.216.34', '130.1.1.1', '11.1.1.1', '64.0.0.1', '10.50.0.1'])
      expect(prefixes.filter((p) => cidrContains(p, ip(stranger))).map(show)).toEqual([]);
    for (const p of prefixes) {
      const inside = [a, b].some((s) => cidrContains(s, p.network) && cidrContains(s, lastOf(p)));
      expect({ prefix: show(p), inside }).toEqual({ prefix: show(p), inside: true });
    }
  });

  test('adjacent subnets are bridged only over their broadcast, network and server', () => {
    // 10.42.0.0/29 ends at .7, 10.42.0.8/29 starts at .8: one run .2-.14.
    const prefixes = conntrackPrefixes(
      [...clientsOf(cidr('10.42.0.0/29')), ...clientsOf(cidr('10.42.0.8/29'))],
      [],
    );
    expect(prefixes.map(show)).toEqual([
      '10.42.0.2/31',
      '10.42.0.4/30',
      '10.42.0.8/30',
      '10.42.0.12/31',
      '10.42.0.14/32',
    ]);
    // A gap of one /29 between them is a stranger's: not bridged.
    const apart = conntrackPrefixes(
      [...clientsOf(cidr('10.42.0.0/29')), ...clientsOf(cidr('10.42.0.16/29'))],
      [],
    );
    expect(apart.some((p) => cidrContains(p, ip('10.42.0.8')))).toBe(false);
  });

  /**
   * Random eduVPN subnets (/24 to /30, aligned, apart or adjacent) in 10.42.0.0/20 with
   * strangers between them; each client is changed, kept, or not bound at all.
   */
  const layout = fc
    .array(fc.tuple(fc.integer({ min: 24, max: 30 }), fc.integer({ min: 0, max: 3 })), {
      minLength: 1,
      maxLength: 12,
    })
    .chain((shapes) => {
      const subnets: Cidr4[] = [];
      let cursor = ip('10.42.0.0');
      for (const [prefix, skip] of shapes) {
        const size = 2 ** (32 - prefix);
        const start = Math.ceil(cursor / size) * size + skip * size;
        if (start + size > ip('10.42.16.0')) break;
        subnets.push({ network: start, prefix });
        cursor = start + size;
      }
      const clients = subnets.flatMap(clientsOf);
      return fc.tuple(
        fc.constant(subnets),
        fc.array(fc.constantFrom('changed', 'kept', 'unbound'), {
          minLength: clients.length,
          maxLength: clients.length,
        }),
        fc.boolean(),
      );
    });

  test('covers every changed client, no kept client, nothing outside the changed subnets', () => {
    fc.assert(
      fc.property(layout, ([subnets, fates, complete]) => {
        const changed: number[] = [];
        const kept: number[] = [];
        const clients = subnets.flatMap(clientsOf);
        clients.forEach((client, i) => {
          // `complete`: every client is bound (changed or kept), as in a ruleset we wrote.
          const fate = complete && fates[i] === 'unbound' ? 'kept' : fates[i];
          if (fate === 'changed') changed.push(client);
          if (fate === 'kept') kept.push(client);
        });
        const prefixes = conntrackPrefixes(changed, kept);
        const covered = (a: number) => prefixes.some((p) => cidrContains(p, a));
        for (const client of changed) expect(covered(client)).toBe(true);
        for (const client of kept) expect(covered(client)).toBe(false);
        const changedSet = new Set(changed);
        const ownSubnets = subnets.filter((s) => changed.some((c) => cidrContains(s, c)));
        const structural = new Set(
          subnets.flatMap((s) => [s.network, s.network + 1, broadcastOf(s)]),
        );
        for (const p of prefixes) {
          for (let a = p.network; a <= lastOf(p); a++) {
            if (changedSet.has(a)) continue;
            // Anything else covered lies in a changed client's own subnet ...
            expect(ownSubnets.some((s) => cidrContains(s, a))).toBe(true);
            // ... and, when every client is bound, is a broadcast, network or server address.
            if (complete) expect(structural.has(a)).toBe(true);
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});
