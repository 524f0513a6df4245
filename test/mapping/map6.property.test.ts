/**
 * Rules the IPv6 mapping keeps for every input (issue 14): no two clients share a public
 * address and port, every block lies inside nat6.portRange and outside nat6.excludePorts,
 * bindings survive adding, removing and reordering pools, and prefix mode is a bijection.
 */
import fc from 'fast-check';
import type { ClientPool } from '../../src/eduvpn/pool.js';
import { isTnatError } from '../../src/errors.js';
import {
  mapClients6,
  mapPrefix6,
  previousFromMap6,
  type NatSettings6,
  type PortMap6,
} from '../../src/mapping/map6.js';
import { formatCidr4 } from '../../src/net/ipv4.js';
import { cidr6Contains, formatCidr6, parseCidr6 } from '../../src/net/ipv6.js';
import { ip } from './fixtures.js';
import { pool6 } from './fixtures6.js';

const NUM_RUNS = 200;

/**
 * Pools in distinct /22 cells of 10/8 with IPv6 ranges in distinct subnets of fd00:42::/48
 * (a /64 or a /112 inside it), or none; up to 509 clients each.
 */
const poolsArb = fc
  .uniqueArray(
    fc.record({
      cell: fc.integer({ min: 0, max: 16383 }),
      prefix: fc.integer({ min: 23, max: 30 }),
      six: fc.constantFrom<'64' | '112' | 'none'>('64', '64', '112', 'none'),
      openvpn: fc.boolean(),
    }),
    { selector: (pool) => pool.cell, maxLength: 6 },
  )
  .map((cells) =>
    cells.map(({ cell, prefix, six, openvpn }, index) => {
      const range6 =
        six === 'none'
          ? undefined
          : `fd00:42:0:${cell.toString(16)}::${six === '112' ? '5:0' : ''}/${six}`;
      return pool6(
        `p${index}`,
        formatCidr4({ network: ip('10.0.0.0') + cell * 1024, prefix }),
        range6,
        openvpn ? 'openvpn' : 'wireguard',
      );
    }),
  );

const powerOfTwoArb = (maxExponent: number) =>
  fc.integer({ min: 0, max: maxExponent }).map((exponent) => 2 ** exponent);

const settingsArb: fc.Arbitrary<NatSettings6> = fc.record({
  publicAddresses: fc
    .uniqueArray(fc.bigInt({ min: 1n, max: 0xffffn }), { minLength: 1, maxLength: 3 })
    .map((hosts) => hosts.map((host) => (0x20010db8n << 96n) + host)),
  portRange: fc
    .tuple(fc.integer({ min: 1, max: 65535 }), fc.integer({ min: 1, max: 65535 }))
    .map(([a, b]) => ({ first: Math.min(a, b), last: Math.max(a, b) })),
  excludePorts: fc.array(
    fc
      .tuple(fc.integer({ min: 1, max: 65535 }), fc.integer({ min: 0, max: 3000 }))
      .map(([first, length]) => ({ first, last: Math.min(65535, first + length) })),
    { maxLength: 2 },
  ),
  portsPerClient: fc.oneof(fc.constant<'auto'>('auto'), powerOfTwoArb(9)),
  minPortsPerClient: powerOfTwoArb(6),
});

function twinCount(pools: readonly ClientPool[]): number {
  return pools
    .filter((pool) => pool.subnet6 !== undefined)
    .reduce((sum, pool) => sum + pool.last - pool.first + 1, 0);
}

function mapOrSkip(run: () => PortMap6): PortMap6 | undefined {
  try {
    return run();
  } catch (error) {
    expect(isTnatError(error) && error.code === 'E_MAPPING').toBe(true);
    return undefined;
  }
}

/** Every invariant of one map, collected and asserted once (an expect per client is slow). */
function problemsOf(map: PortMap6, settings: NatSettings6): string[] {
  const problems: string[] = [];
  const taken = new Map<string, bigint>();
  for (const assignment of map.assignments()) {
    const { client, publicAddress, block } = assignment;
    if (!block) {
      problems.push(`${client} has no block`);
      continue;
    }
    if (block.first < settings.portRange.first || block.last > settings.portRange.last) {
      problems.push(`${block.first}-${block.last} outside the range`);
    }
    if (settings.excludePorts.some((ex) => ex.first <= block.last && ex.last >= block.first)) {
      problems.push(`${block.first} holds an excluded port`);
    }
    // Blocks are aligned and of one size, so equal first ports mean the same block.
    const key = `${publicAddress}:${block.first}`;
    if (taken.has(key)) problems.push(`${client} and ${taken.get(key)} share ${key}`);
    taken.set(key, client);
    if (
      !cidr6Contains(
        parseCidr6(assignment.pool.subnet6 ?? '::/128') ?? { network: 0n, prefix: 128 },
        client,
      )
    ) {
      problems.push(`${client} outside its pool's range`);
    }
    const forward = map.forward(client)?.block;
    if (forward?.first !== block.first || forward.last !== block.last) {
      problems.push(`forward ${client}`);
    }
    for (const port of [block.first, block.last]) {
      if (map.reverse(publicAddress, port)?.client !== client) problems.push(`reverse ${port}`);
    }
    if (problems.length > 10) break;
  }
  if (taken.size !== map.clientCount) problems.push(`${taken.size} of ${map.clientCount} listed`);
  return problems;
}

function bindingsOf(map: PortMap6): Map<bigint, string> {
  return new Map(
    [...map.assignments()].map((a) => [a.client, `${a.publicAddress}:${a.block?.first}`]),
  );
}

describe('mapClients6 properties', () => {
  test('no shared address and port, every block inside the range, forward and reverse agree', () => {
    fc.assert(
      fc.property(poolsArb, settingsArb, (pools, settings) => {
        const map = mapOrSkip(() => mapClients6(pools, settings));
        if (!map) return;
        expect(map.clientCount).toBe(twinCount(pools));
        expect(problemsOf(map, settings)).toEqual([]);
      }),
      { numRuns: NUM_RUNS },
    );
  });

  test('with a fixed size, adding, removing and reordering pools moves no remaining client', () => {
    fc.assert(
      fc.property(
        poolsArb,
        settingsArb,
        fc.nat(),
        fc.integer({ min: 0, max: 40 }),
        (pools, settings, seed, cut) => {
          const fixed = { ...settings, portsPerClient: 2 ** (seed % 8) };
          const before = mapOrSkip(() => mapClients6(pools, fixed));
          if (!before) return;
          // Drop one pool, reverse the rest, add a new one (a cell no generated pool uses).
          const kept = pools.filter((_, index) => index !== seed % Math.max(pools.length, 1));
          const added = pool6(
            'new',
            formatCidr4({ network: ip('10.200.0.0'), prefix: 30 - (cut % 4) }),
            'fd00:43::/64',
          );
          const after = mapOrSkip(() =>
            mapClients6([added, ...[...kept].reverse()], fixed, previousFromMap6(before)),
          );
          if (!after) return;
          const old = bindingsOf(before);
          const moved = [...bindingsOf(after)].filter(
            ([client, binding]) => old.has(client) && old.get(client) !== binding,
          );
          expect(moved).toEqual([]);
          expect(problemsOf(after, fixed)).toEqual([]);
        },
      ),
      { numRuns: NUM_RUNS },
    );
  });
});

describe('mapPrefix6 properties', () => {
  test('a bijection between clients and their public addresses', () => {
    const publicPrefix = { network: 0x20010db80100n << 80n, prefix: 48 };
    fc.assert(
      fc.property(
        poolsArb,
        fc.array(fc.bigInt({ min: 0n, max: (1n << 80n) - 1n }), { maxLength: 30 }),
        (pools, probes) => {
          const map = mapPrefix6(pools, publicPrefix);
          const seen = new Map<bigint, bigint>();
          const problems: string[] = [];
          for (const { client, publicAddress } of map.assignments()) {
            if (seen.has(publicAddress))
              problems.push(`${client} and ${seen.get(publicAddress)} share one`);
            seen.set(publicAddress, client);
            if (!cidr6Contains(publicPrefix, publicAddress))
              problems.push(`${publicAddress} outside`);
            if (map.reverse(publicAddress)?.client !== client)
              problems.push(`reverse of ${client}`);
            if (map.forward(client)?.publicAddress !== publicAddress)
              problems.push(`forward ${client}`);
            if (problems.length > 10) break;
          }
          expect(problems).toEqual([]);
          expect(seen.size).toBe(twinCount(pools));
          // Any other address of the prefix names a client only if that client maps to it.
          for (const host of probes) {
            const address = publicPrefix.network | host;
            const found = map.reverse(address);
            if (found) expect(map.forward(found.client)?.publicAddress).toBe(address);
            else expect(seen.has(address)).toBe(false);
          }
          expect(formatCidr6(map.publicPrefix)).toBe('2001:db8:100::/48');
        },
      ),
      { numRuns: NUM_RUNS },
    );
  });
});
