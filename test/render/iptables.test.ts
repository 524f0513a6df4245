import {
  CHAIN_PREFIX,
  MAX_CHAIN_NAME_LENGTH,
  renderIptablesChains,
  renderLinearChain,
  renderNatTable,
} from '../../src/render/iptables.js';
import type { IptablesNat } from '../../src/render/iptables.js';
import type { PortMap } from '../../src/mapping/types.js';
import { mapClients } from '../../src/mapping/map.js';
import { formatIpv4, parseCidr4 } from '../../src/net/ipv4.js';
import type { ClientPool } from '../../src/eduvpn/pool.js';
import { loadNatTable, walkIptables } from '../helpers/packet-walk.js';
import type { NatTable } from '../helpers/packet-walk.js';
import { arrayPortMap, ip } from '../helpers/port-map.js';
import fc from 'fast-check';
import { expectGolden } from './golden.js';
import { slash16Map, tinyMap, treeMap } from './maps.js';

const options = { outInterface: 'eth0' };

/** Our table as iptables-restore text, with a built-in POSTROUTING to walk. */
function asRules(nat: IptablesNat): string {
  return renderNatTable(nat).replace('*nat\n', '*nat\n:POSTROUTING ACCEPT [0:0]\n');
}

function portsOf(first: number, last: number): string {
  return first === last ? `${first}` : `${first}-${last}`;
}

/** Walks every sampled client of `map` for tcp, udp and icmp; returns the most rules passed. */
function expectEveryClientTranslated(map: PortMap, table: NatTable, sample: number[]): number {
  let most = 0;
  for (const client of sample) {
    const assignment = map.forward(client);
    if (!assignment) throw new Error(`no assignment for ${formatIpv4(client)}`);
    const src = formatIpv4(client);
    const publicAddress = formatIpv4(assignment.publicAddress);
    const ports = portsOf(assignment.firstPort, assignment.lastPort);
    for (const proto of ['tcp', 'udp'] as const) {
      const result = walkIptables(table, { src, proto, out: 'eth0' });
      expect({
        src,
        proto,
        result: result.action,
        to: 'toSource' in result && result.toSource,
      }).toEqual({
        src,
        proto,
        result: 'SNAT',
        to: `${publicAddress}:${ports}`,
      });
      most = Math.max(most, result.rulesPassed);
    }
    const icmp = walkIptables(table, { src, proto: 'icmp', out: 'eth0' });
    expect({ src, icmp }).toMatchObject({ src, icmp: { action: 'SNAT', toSource: publicAddress } });
    most = Math.max(most, icmp.rulesPassed);
  }
  return most;
}

function allClients(map: PortMap): number[] {
  return [...map.assignments()].map((assignment) => assignment.client);
}

describe('renderIptablesChains', () => {
  test.each([
    ['tiny-iptables.rules', tinyMap],
    ['tree-iptables.rules', treeMap],
  ])('matches the golden file %s', (name, build) => {
    expectGolden(name, renderNatTable(renderIptablesChains(build(), options)));
  });

  test('renders the same bytes for the same map, whatever order assignments come in', () => {
    const map = treeMap();
    const reversed = arrayPortMap([...map.assignments()].reverse(), map.blockSize);
    expect(renderNatTable(renderIptablesChains(reversed, options))).toBe(
      renderNatTable(renderIptablesChains(map, options)),
    );
  });

  test('puts -o on the jump only and names chains TNAT[-prefix] within the length limit', () => {
    const nat = renderIptablesChains(slash16Map(), { outInterface: 'ens18' });
    expect(nat.jump).toBe('-A POSTROUTING -o ens18 -j TNAT');
    const names = [...nat.chains.keys()];
    const badNames = names.filter(
      (name) =>
        name.length > MAX_CHAIN_NAME_LENGTH ||
        !new RegExp(`^${CHAIN_PREFIX}(-\\d+\\.\\d+\\.\\d+\\.\\d+/\\d+)?$`).test(name),
    );
    const badRules = [...nat.chains].flatMap(([name, rules]) =>
      // Our chains are reached through the jump alone; a `-o` in them costs every rule (issue 13).
      rules.filter((rule) => !rule.startsWith(`-A ${name} `) || rule.includes(' -o ')),
    );
    expect(names.length).toBeGreaterThan(4000);
    expect({ badNames, badRules }).toEqual({ badNames: [], badRules: [] });
  });

  test('keeps every chain at 16 jumps or one leaf of at most 16 clients (50 rules)', () => {
    const nat = renderIptablesChains(slash16Map(), options);
    const oversized = [...nat.chains].filter(([, rules]) => {
      const jumps = rules.filter((rule) => rule.includes(' -j TNAT-')).length;
      const mixed = jumps > 0 && jumps < rules.length;
      return mixed || rules.length > (jumps > 0 ? 16 : 50);
    });
    expect(oversized.map(([name]) => name)).toEqual([]);
  });

  test('renders an empty root chain for a map without clients', () => {
    const nat = renderIptablesChains(arrayPortMap([], 256), options);
    expect([...nat.chains]).toEqual([['TNAT', []]]);
  });

  test('skips levels with a single child: one /16 jumps straight to its /20s', () => {
    const nat = renderIptablesChains(slash16Map(), options);
    const root = nat.chains.get('TNAT') ?? [];
    expect(root).toHaveLength(16);
    expect(root[0]).toBe('-A TNAT -s 10.42.0.0/20 -j TNAT-10.42.0.0/20');
  });
});

describe('the packet walk through the rendered chains', () => {
  const rendered = [
    ['tree', renderIptablesChains],
    ['linear', renderLinearChain],
  ] as const;

  test.each(rendered)('%s: tiny and tree maps translate every client', (_, render) => {
    for (const map of [tinyMap(), treeMap()]) {
      const table = loadNatTable(asRules(render(map, options)));
      expect(expectEveryClientTranslated(map, table, allClients(map))).toBeGreaterThan(0);
    }
  });

  test.each([
    ['10.42.0.1', 'tcp'],
    ['10.42.0.1', 'udp'],
    ['10.42.0.42', 'tcp'],
    ['10.42.0.100', 'udp'],
    ['10.43.7.1', 'tcp'],
    ['10.99.0.2', 'tcp'],
    ['10.99.0.2', 'icmp'],
  ] as const)('leaves %s (%s, not a client) to later rules', (src, proto) => {
    for (const [, render] of rendered) {
      const result = walkIptables(asRules(render(treeMap(), options)), { src, proto, out: 'eth0' });
      expect(result.action).toBe('ACCEPT');
    }
  });

  test.each(['10.42.0.2', '10.42.0.35', '10.43.7.3'])(
    'does not touch %s leaving by another interface',
    (src) => {
      for (const [, render] of rendered) {
        for (const proto of ['tcp', 'udp', 'icmp'] as const) {
          const result = walkIptables(asRules(render(treeMap(), options)), {
            src,
            proto,
            out: 'tun0',
          });
          expect(result).toEqual({ action: 'ACCEPT', chainPath: ['POSTROUTING'], rulesPassed: 1 });
        }
      }
    },
  );

  describe('a full /16', () => {
    const map = slash16Map();
    const tree = loadNatTable(asRules(renderIptablesChains(map, options)));
    const clients = allClients(map);
    const step = Math.floor(clients.length / 198);
    const sample = [...clients.filter((_, i) => i % step === 0).slice(0, 199), clients.at(-1) ?? 0];

    test('translates 200 sampled clients, first and last included, passing at most 100 rules', () => {
      expect(sample).toHaveLength(200);
      expect(sample[0]).toBe(ip('10.42.0.2'));
      expect(sample.at(-1)).toBe(ip('10.42.255.254'));
      expect(expectEveryClientTranslated(map, tree, sample)).toBeLessThanOrEqual(100);
    });

    test('walks the last client through /20, /24 and /28 chains', () => {
      const result = walkIptables(tree, { src: '10.42.255.254', proto: 'tcp', out: 'eth0' });
      expect(result.chainPath).toEqual([
        'POSTROUTING',
        'TNAT',
        'TNAT-10.42.240.0/20',
        'TNAT-10.42.255.0/24',
        'TNAT-10.42.255.240/28',
      ]);
    });

    test.each(['10.42.0.0', '10.42.0.1', '10.42.255.255'])(
      'returns tcp and udp of %s (not a client) without port SNAT',
      (src) => {
        for (const proto of ['tcp', 'udp'] as const) {
          expect(walkIptables(tree, { src, proto, out: 'eth0' }).action).toBe('ACCEPT');
        }
      },
    );

    test('costs the linear chain a rule per client and protocol for the last client', () => {
      const linear = loadNatTable(asRules(renderLinearChain(map, options)));
      const udp = walkIptables(linear, { src: '10.42.255.254', proto: 'udp', out: 'eth0' });
      // The jump, every tcp rule, the tcp RETURN, every udp rule.
      expect(udp).toMatchObject({ action: 'SNAT', rulesPassed: 2 + 2 * clients.length });
      const tcp = walkIptables(linear, { src: '10.42.255.254', proto: 'tcp', out: 'eth0' });
      expect(tcp).toMatchObject({ action: 'SNAT', rulesPassed: 1 + clients.length });
    });

    test("passes the last client's tcp past the leaf's tcp rules only (issue 13)", () => {
      const result = walkIptables(tree, { src: '10.42.255.254', proto: 'tcp', out: 'eth0' });
      // The jump; 16 jumps in TNAT, the /20 and the /24; 15 clients' tcp rules in the /28.
      expect(result).toMatchObject({ action: 'SNAT', rulesPassed: 1 + 3 * 16 + 15 });
    });
  });

  test('translates every client of a map made by mapClients (three OpenVPN subnets)', () => {
    const pools: ClientPool[] = ['10.42.0.0/26', '10.42.0.64/26', '172.16.9.0/25'].map(
      (text, process) => {
        const subnet4 = parseCidr4(text, true);
        if (!subnet4) throw new Error(text);
        const size = 2 ** (32 - subnet4.prefix);
        return {
          profileId: 'internet',
          protocol: 'openvpn',
          origin: { file: '/etc/openvpn/server/internet-0.conf', process },
          subnet4,
          first: subnet4.network + 2,
          last: subnet4.network + size - 2,
        };
      },
    );
    const map = mapClients(pools, {
      publicAddresses: [ip('192.0.2.1')],
      portRange: { first: 1024, last: 65535 },
      excludePorts: [],
      portsPerClient: 'auto',
      minPortsPerClient: 16,
    });
    const table = loadNatTable(asRules(renderIptablesChains(map, options)));
    expect(map.clientCount).toBe(61 + 61 + 125);
    expect(expectEveryClientTranslated(map, table, allClients(map))).toBeLessThanOrEqual(100);
  });
});

describe('the tree for any set of clients (property)', () => {
  // Addresses clustered around a few bases, so trees get deep and uneven; every third address
  // is not a client but sits among them.
  const addressSets = fc
    .tuple(
      fc.array(fc.integer({ min: 0x0a000000, max: 0x0affffff }), { minLength: 1, maxLength: 4 }),
      fc.array(fc.tuple(fc.nat(3), fc.nat(5000)), { minLength: 1, maxLength: 400, size: 'max' }),
    )
    .map(([bases, offsets]) => {
      const addresses = [
        ...new Set(
          offsets.map(([base, offset]) => ((bases[base % bases.length] ?? 0) + offset) >>> 0),
        ),
      ];
      return {
        clients: addresses.filter((_, i) => i % 3 !== 2),
        strangers: addresses.filter((_, i) => i % 3 === 2),
      };
    });

  test('translates every client, passes a bounded number of rules, leaves others alone', () => {
    fc.assert(
      fc.property(addressSets, ({ clients, strangers }) => {
        const list = clients.map((client, i) => ({
          client,
          publicAddress: ip(i % 3 === 0 ? '192.0.2.1' : '192.0.2.2'),
          firstPort: 1024 + 64 * (i % 1000),
          lastPort: 1024 + 64 * (i % 1000) + 63,
        }));
        const map = arrayPortMap(list, 64);
        const table = loadNatTable(asRules(renderIptablesChains(map, options)));
        // Below the root, at most 7 levels of 16 jumps, then a leaf of at most 50 rules.
        expect(expectEveryClientTranslated(map, table, clients)).toBeLessThanOrEqual(
          1 + 8 * 16 + 50,
        );
        for (const stranger of strangers) {
          for (const proto of ['tcp', 'udp'] as const) {
            const result = walkIptables(table, { src: formatIpv4(stranger), proto, out: 'eth0' });
            expect(result.action).toBe('ACCEPT');
          }
        }
      }),
      { numRuns: 60 },
    );
  });
});
