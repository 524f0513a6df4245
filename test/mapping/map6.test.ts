import { isTnatError } from '../../src/errors.js';
import {
  formatAssignment6,
  mapClients6,
  mapPrefix6,
  previousFromMap6,
} from '../../src/mapping/map6.js';
import type { NatSettings6 } from '../../src/mapping/map6.js';
import { TwinIndex } from '../../src/mapping/twin6.js';
import { formatIpv4 } from '../../src/net/ipv4.js';
import { formatIpv6, parseCidr6 } from '../../src/net/ipv6.js';
import { ip } from './fixtures.js';
import { ip6, pool6 } from './fixtures6.js';

const FULL = { first: 1024, last: 65535 };

function settings6(overrides: Partial<NatSettings6> = {}): NatSettings6 {
  return {
    publicAddresses: [ip6('2001:db8::1')],
    portRange: FULL,
    excludePorts: [],
    portsPerClient: 64,
    minPortsPerClient: 64,
    ...overrides,
  };
}

function prefix(text: string) {
  const range = parseCidr6(text, true);
  if (!range) throw new Error(`bad test prefix ${text}`);
  return range;
}

function errorOf(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    if (isTnatError(error)) return `${error.code} ${error.message}`;
    throw error;
  }
  throw new Error('expected an error');
}

describe('IPv6 twins', () => {
  const wireguard = pool6('internet', '10.87.12.0/24', 'fd87:12::/64');

  test('10.87.12.77 and fd87:12::4d are twins, both ways', () => {
    const twins = new TwinIndex([wireguard]);
    expect(formatIpv6(twins.twinOf(wireguard, ip('10.87.12.77')) ?? 0n)).toBe('fd87:12::4d');
    const found = twins.clientOf(ip6('fd87:12::4d'));
    expect(found && formatIpv4(found.client4)).toBe('10.87.12.77');
    expect(twins.count).toBe(253);
  });

  test.each(['fd87:12::1', 'fd87:12::ff', 'fd87:12::1:2', 'fd87:13::4d', '::'])(
    '%s is no client',
    (address) => {
      expect(new TwinIndex([wireguard]).clientOf(ip6(address))).toBeUndefined();
    },
  );

  test('a pool without an IPv6 range has no twins', () => {
    const twins = new TwinIndex([pool6('v4only', '10.88.0.0/24', undefined)]);
    expect(twins.spans).toEqual([]);
    expect(twins.count).toBe(0);
  });

  test('a /112 limits the twins: OpenVPN up to its last address, WireGuard one before', () => {
    const openvpn = pool6('big', '10.0.0.0/15', 'fd00:1::/112', 'openvpn');
    const wg = pool6('bigwg', '10.2.0.0/15', 'fd00:2::/112', 'wireguard');
    const twins = new TwinIndex([openvpn, wg]);
    expect(twins.spans.map((span) => formatIpv4(span.last4))).toEqual([
      '10.0.255.255',
      '10.2.255.254',
    ]);
    expect(formatIpv6(twins.twinOf(openvpn, ip('10.0.255.255')) ?? 0n)).toBe('fd00:1::ffff');
    expect(twins.twinOf(openvpn, ip('10.1.0.0'))).toBeUndefined();
    expect(twins.clientOf(ip6('fd00:2::ffff'))).toBeUndefined();
  });

  test('overlapping IPv6 ranges are refused, naming both pools', () => {
    expect(
      errorOf(
        () =>
          new TwinIndex([
            pool6('a', '10.1.0.0/24', 'fd00::/64'),
            pool6('b', '10.2.0.0/24', 'fd00::/112'),
          ]),
      ),
    ).toBe(
      'E_MAPPING the IPv6 ranges of profile "a" (10.1.0.0/24 and fd00::/64, /etc/vpn-user-portal/config.php:1) and profile "b" (10.2.0.0/24 and fd00::/112, /etc/vpn-user-portal/config.php:1) overlap, so an IPv6 client could not be named: give each pool its own IPv6 range',
    );
  });
});

describe('IPv6 port blocks', () => {
  const pools = [
    pool6('internet', '10.87.12.0/24', 'fd87:12::/64'),
    pool6('office', '10.87.13.0/28', 'fd87:13::/64', 'openvpn'),
  ];

  test('the first client gets the top block, in the seed form', () => {
    const map = mapClients6(pools, settings6());
    const first = map.forward(ip6('fd87:12::2'));
    expect(first && formatAssignment6(first)).toBe('[2001:db8::1]:65472-65535');
    const twin = map.forward(ip6('fd87:12::4d'));
    expect(twin && formatIpv4(twin.twin)).toBe('10.87.12.77');
    expect(twin && formatAssignment6(twin)).toBe('[2001:db8::1]:60672-60735');
    expect(map.clientCount).toBe(253 + 13);
    expect(map.reverse(ip6('2001:db8::1'), 60700)?.client).toBe(ip6('fd87:12::4d'));
    expect(map.reverse(ip6('2001:db8::2'), 60610)).toBeUndefined();
    expect(map.reverse(ip6('2001:db8::1'))).toBeUndefined();
  });

  test('clients spill over to the next public address', () => {
    const map = mapClients6(
      pools,
      settings6({
        publicAddresses: [ip6('2001:db8::1'), ip6('2001:db8::2')],
        portsPerClient: 256,
      }),
    );
    // 64512 ports / 256 = 252 blocks on the first address.
    const spilled = map.forward(ip6('fd87:12::fe'));
    expect(spilled && formatAssignment6(spilled)).toBe('[2001:db8::2]:65280-65535');
  });

  test('a client keeps its block when pools are reordered (previous bindings)', () => {
    const before = mapClients6(pools, settings6());
    const previous = previousFromMap6(before);
    const after = mapClients6([...pools].reverse(), settings6(), previous);
    expect([...after.assignments()]).toEqual([...before.assignments()]);
    expect(after.forward(ip6('fd87:13::2'))?.block).toEqual(
      before.forward(ip6('fd87:13::2'))?.block,
    );
  });

  test('too many clients: the message names the nat6 keys', () => {
    expect(errorOf(() => mapClients6(pools, settings6({ portsPerClient: 32768 })))).toBe(
      'E_MAPPING 266 clients need 266 blocks but 1 public address with 32768 ports per client gives only 1: add 265 more public addresses to nat6.publicAddresses or lower nat6.portsPerClient to 128, or shrink the client ranges: they are profile "internet" (10.87.12.0/24, /etc/vpn-user-portal/config.php:1) with 253, profile "office" (10.87.13.0/28, /etc/vpn-user-portal/config.php:1) with 13',
    );
  });

  test('a public address inside a client range is refused', () => {
    expect(
      errorOf(() => mapClients6(pools, settings6({ publicAddresses: [ip6('fd87:13::1')] }))),
    ).toBe(
      'E_MAPPING public address fd87:13::1 lies in the IPv6 client range fd87:13::/64 of profile "office": use this server\'s public IPv6 address or prefix there',
    );
  });
});

describe('IPv6 prefix mode', () => {
  test('host bits into the public prefix, and back', () => {
    const map = mapPrefix6(
      [pool6('internet', '10.87.12.0/24', 'fd87:12::/64')],
      prefix('2001:db8:100::/64'),
    );
    const twin = map.forward(ip6('fd87:12::4d'));
    expect(twin && formatAssignment6(twin)).toBe('2001:db8:100::4d');
    expect(map.reverse(ip6('2001:db8:100::4d'))?.twin).toBe(ip('10.87.12.77'));
    expect(map.reverse(ip6('2001:db8:100::1'))).toBeUndefined();
    expect(map.reverse(ip6('2001:db8:101::4d'))).toBeUndefined();
    expect(map.clientCount).toBe(253);
  });

  test('ranges with their own subnet bits share one /56', () => {
    const pools = [
      pool6('a', '10.1.0.0/24', 'fd42:4242:4242:1::/64'),
      pool6('b', '10.2.0.0/24', 'fd99:1:2:2::/112', 'openvpn'),
    ];
    const map = mapPrefix6(pools, prefix('2001:db8:100::/56'));
    expect(formatIpv6(map.forward(ip6('fd99:1:2:2::4d'))?.publicAddress ?? 0n)).toBe(
      '2001:db8:100:2::4d',
    );
    expect(formatIpv6(map.forward(ip6('fd42:4242:4242:1::4d'))?.publicAddress ?? 0n)).toBe(
      '2001:db8:100:1::4d',
    );
    expect(map.reverse(ip6('2001:db8:100:2::4d'))?.pool.profileId).toBe('b');
  });

  test('a prefix too small says how large it must be, with the config line', () => {
    const pools = [pool6('a', '10.1.0.0/24', 'fd42::/64'), pool6('b', '10.2.0.0/24', 'fd43::/64')];
    expect(
      errorOf(() =>
        mapPrefix6(pools, prefix('2001:db8:100::/64'), {
          file: '/etc/traceable-nat/config.yaml',
          line: 9,
        }),
      ),
    ).toBe(
      'E_CONFIG /etc/traceable-nat/config.yaml:9: nat6.publicPrefix 2001:db8:100::/64 is too small for the IPv6 client ranges fd42::/64, fd43::/64: a /64 keeps only the last 64 bits of a client address, and these ranges share them, so two clients would get one public address; use a /15 or larger prefix (or give each range its own subnet bits)',
    );
  });

  test('a client range larger than the public prefix is refused', () => {
    expect(
      errorOf(() =>
        mapPrefix6([pool6('a', '10.1.0.0/24', 'fd42::/48')], prefix('2001:db8:100::/64')),
      ),
    ).toMatch(/use a \/48 or larger prefix/);
  });
});
