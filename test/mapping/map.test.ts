import { isTnatError } from '../../src/errors.js';
import { bindingAtRow } from '../../src/mapping/bindings.js';
import { mapClients, previousFromAssignments } from '../../src/mapping/map.js';
import type { NatSettings, PortBlock } from '../../src/mapping/types.js';
import type { ClientPool } from '../../src/eduvpn/pool.js';
import { formatIpv4 } from '../../src/net/ipv4.js';
import { ip, poolOf, publicAddresses, settingsOf } from './fixtures.js';

function mappingError(pools: readonly ClientPool[], settings: NatSettings): string {
  try {
    mapClients(pools, settings);
  } catch (error) {
    if (isTnatError(error) && error.code === 'E_MAPPING') return error.message;
    throw error;
  }
  throw new Error('mapClients did not throw');
}

function blockOf(pools: readonly ClientPool[], settings: NatSettings, client: string) {
  const assignment = mapClients(pools, settings).forward(ip(client));
  return (
    assignment && {
      publicAddress: formatIpv4(assignment.publicAddress),
      first: assignment.firstPort,
      last: assignment.lastPort,
    }
  );
}

/** The seed's profile: one /24 split into a UDP and a TCP process, 250 clients. */
const SEED_POOLS = [
  poolOf('internet', '192.168.101.0/25'),
  poolOf('internet', '192.168.101.128/25'),
];
/** One /24: 253 clients, one more than 252 blocks of 256. */
const SLASH24 = [poolOf('internet', '10.0.0.0/24')];

describe('mapClients: layout', () => {
  test.each([
    ['192.168.101.2', 65280, 65535],
    ['192.168.101.3', 65024, 65279],
    ['192.168.101.4', 64768, 65023],
    ['192.168.101.5', 64512, 64767],
    ['192.168.101.6', 64256, 64511],
    // The TCP process's first client is client number 125.
    ['192.168.101.130', 33280, 33535],
    ['192.168.101.254', 1536, 1791],
  ])('the seed layout gives %s ports %p-%p', (client, first, last) => {
    expect(blockOf(SEED_POOLS, settingsOf(), client)).toEqual({
      publicAddress: '192.0.2.1',
      first,
      last,
    });
  });

  test('spills over to the second public address at the exact boundary', () => {
    const settings = settingsOf({ publicAddresses: publicAddresses(2), portsPerClient: 256 });
    expect(blockOf(SLASH24, settings, '10.0.0.253')).toEqual({
      publicAddress: '192.0.2.1',
      first: 1024,
      last: 1279,
    });
    expect(blockOf(SLASH24, settings, '10.0.0.254')).toEqual({
      publicAddress: '192.0.2.2',
      first: 65280,
      last: 65535,
    });
    const map = mapClients(SLASH24, settings);
    expect(map.reverse(ip('192.0.2.2'), 65300)?.client).toBe(ip('10.0.0.254'));
    expect(map.reverse(ip('192.0.2.2'), 65279)).toBeUndefined();
  });

  test('hands out in pool order but lists assignments in address order', () => {
    const later = poolOf('b', '10.0.1.0/30');
    const earlier = poolOf('a', '10.0.0.0/30');
    const map = mapClients([later, earlier], settingsOf({ portsPerClient: 256 }));
    expect(map.forward(ip('10.0.1.2'))?.firstPort).toBe(65280);
    expect(map.forward(ip('10.0.0.2'))?.firstPort).toBe(65024);
    expect([...map.assignments()].map((a) => [formatIpv4(a.client), a.pool])).toEqual([
      ['10.0.0.2', earlier],
      ['10.0.1.2', later],
    ]);
    expect(map.forward(ip('10.0.0.2'))?.pool).toBe(earlier);
  });

  test('an empty pool list gives an empty map', () => {
    const map = mapClients([], settingsOf());
    expect(map.clientCount).toBe(0);
    expect([...map.assignments()]).toEqual([]);
    expect(map.forward(ip('10.0.0.2'))).toBeUndefined();
    expect(map.reverse(ip('192.0.2.1'), 65535)).toBeUndefined();
  });

  test('a pool without client addresses (a /31) is skipped', () => {
    const map = mapClients([poolOf('p2p', '10.9.0.0/31'), ...SLASH24], settingsOf());
    expect(map.clientCount).toBe(253);
    expect(map.forward(ip('10.0.0.2'))?.firstPort).toBe(65408);
  });

  test.each([
    ['the network address', '10.0.0.0'],
    ['the server address', '10.0.0.1'],
    ['the broadcast address', '10.0.0.255'],
    ['an address in no pool', '10.0.1.2'],
  ])('forward of %s is undefined', (_name, client) => {
    expect(mapClients(SLASH24, settingsOf()).forward(ip(client))).toBeUndefined();
  });

  test('forward of a number that is no address is undefined', () => {
    const map = mapClients(SLASH24, settingsOf());
    for (const client of [ip('10.0.0.2') + 0.5, -1, 2 ** 32 + ip('10.0.0.2')]) {
      expect(map.forward(client)).toBeUndefined();
    }
  });

  test.each<[string, number, number]>([
    ['an address that is not ours', ip('192.0.2.9'), 65535],
    ['a port below the range', ip('192.0.2.1'), 1023],
    ['a port above the range', ip('192.0.2.1'), 65536],
    ['a port in an excluded block', ip('192.0.2.1'), 40000],
    ['a port in a block not handed out', ip('192.0.2.1'), 2000],
    ['a port that is not a whole number', ip('192.0.2.1'), 65535.5],
  ])('reverse of %s is undefined', (_name, publicAddress, port) => {
    const settings = settingsOf({
      portsPerClient: 256,
      excludePorts: [{ first: 32768, last: 60999 }],
    });
    const map = mapClients([poolOf('internet', '10.0.0.0/25')], settings);
    expect(map.reverse(ip('192.0.2.1'), 65535)?.client).toBe(ip('10.0.0.2'));
    expect(map.reverse(publicAddress, port)).toBeUndefined();
  });
});

describe('mapClients: auto block size', () => {
  const oneClient = poolOf('one', '10.1.0.0/30');
  test.each<[string, ClientPool[], Partial<NatSettings>, number, PortBlock]>([
    ['250 clients', SEED_POOLS, {}, 256, { first: 65280, last: 65535 }],
    [
      '252 clients',
      [...SEED_POOLS, poolOf('a', '10.2.0.0/30'), poolOf('b', '10.3.0.0/30')],
      {},
      256,
      { first: 65280, last: 65535 },
    ],
    ['253 clients', SLASH24, {}, 128, { first: 65408, last: 65535 }],
    [
      '253 clients on two addresses',
      SLASH24,
      { publicAddresses: publicAddresses(2) },
      256,
      { first: 65280, last: 65535 },
    ],
    ['509 clients', [poolOf('a', '10.0.0.0/23')], {}, 64, { first: 65472, last: 65535 }],
    ['1 client', [oneClient], {}, 32768, { first: 32768, last: 65535 }],
    [
      '1 client beside the ephemeral range',
      [oneClient],
      { excludePorts: [{ first: 32768, last: 60999 }] },
      16384,
      { first: 16384, last: 32767 },
    ],
    ['0 clients', [], {}, 32768, { first: 32768, last: 65535 }],
  ])('%s get blocks of %p', (_name, pools, overrides, blockSize, firstBlock) => {
    const map = mapClients(pools, settingsOf(overrides));
    expect(map.blockSize).toBe(blockSize);
    expect(map.blocks[0]).toEqual(firstBlock);
    expect(map.clientCount).toBe(pools.reduce((sum, pool) => sum + pool.last - pool.first + 1, 0));
  });
});

describe('mapClients: errors', () => {
  const bigPool = [poolOf('internet', '10.0.0.0/16')];
  test.each<[string, ClientPool[], Partial<NatSettings>, string]>([
    [
      'one client too many for a fixed size',
      SLASH24,
      { portsPerClient: 256 },
      '253 clients need 253 blocks but 1 public address with 256 ports per client gives only 252: add 1 more public address to nat.publicAddresses or lower nat.portsPerClient to 128, or shrink the client ranges: they are profile "internet" (10.0.0.0/24, /etc/vpn-user-portal/config.php:1) with 253',
    ],
    [
      'auto stopped by minPortsPerClient',
      SLASH24,
      { minPortsPerClient: 256 },
      '253 clients need 253 blocks but 1 public address with 256 ports per client gives only 252: add 1 more public address to nat.publicAddresses or lower nat.minPortsPerClient from 256 to 128, or shrink the client ranges: they are profile "internet" (10.0.0.0/24, /etc/vpn-user-portal/config.php:1) with 253',
    ],
    [
      'a /16 on two addresses with 128 ports each',
      bigPool,
      { publicAddresses: publicAddresses(2), portsPerClient: 128 },
      '65533 clients need 65533 blocks but 2 public addresses with 128 ports per client give only 1008: add 129 more public addresses to nat.publicAddresses or lower nat.portsPerClient to 1, or shrink the client ranges: they are profile "internet" (10.0.0.0/16, /etc/vpn-user-portal/config.php:1) with 65533',
    ],
    [
      'a /16 on two addresses with auto',
      bigPool,
      { publicAddresses: publicAddresses(2) },
      '65533 clients need 65533 blocks but 2 public addresses with 64 ports per client give only 2016: add 64 more public addresses to nat.publicAddresses or lower nat.minPortsPerClient from 64 to 1, or shrink the client ranges: they are profile "internet" (10.0.0.0/16, /etc/vpn-user-portal/config.php:1) with 65533',
    ],
    [
      'a /15 on one address: no size fits',
      [poolOf('internet', '10.0.0.0/15')],
      { portsPerClient: 64 },
      '131069 clients need 131069 blocks but 1 public address with 64 ports per client gives only 1008: add 130 more public addresses to nat.publicAddresses (no smaller block fits: even 1 port per client gives only 64512), or shrink the client ranges: they are profile "internet" (10.0.0.0/15, /etc/vpn-user-portal/config.php:1) with 131069',
    ],
    [
      'several pools: the largest three are named with their files, the rest counted',
      [
        poolOf('a', '10.1.0.0/24', 'portal.php', 7),
        poolOf('b', '10.2.0.0/22', 'wg0.conf', 3),
        poolOf('c', '10.3.0.0/25', 'c.json'),
        poolOf('d', '10.4.0.0/23', 'd.json'),
      ],
      { portsPerClient: 64 },
      '1908 clients need 1908 blocks but 1 public address with 64 ports per client gives only 1008: add 1 more public address to nat.publicAddresses or lower nat.portsPerClient to 32, or shrink the client ranges: they are profile "b" (10.2.0.0/22, wg0.conf:3) with 1021, profile "d" (10.4.0.0/23, d.json:1) with 509, profile "a" (10.1.0.0/24, portal.php:7) with 253 and 1 more pool',
    ],
    [
      'a range smaller than a block',
      SLASH24,
      { portRange: { first: 1024, last: 1100 }, portsPerClient: 256 },
      'nat.portRange 1024-1100 holds no whole block of 256 ports: widen nat.portRange, shrink nat.excludePorts or lower nat.portsPerClient to 64',
    ],
    [
      'an exclusion that covers the range, even without clients',
      [],
      { excludePorts: [{ first: 1024, last: 65535 }] },
      'nat.portRange 1024-65535 without nat.excludePorts 1024-65535 holds no whole block of 64 ports: widen nat.portRange or shrink nat.excludePorts',
    ],
    [
      'exclusions that leave only small gaps',
      SLASH24,
      {
        portRange: { first: 1024, last: 2047 },
        excludePorts: [
          { first: 1024, last: 1500 },
          { first: 1580, last: 2047 },
        ],
      },
      'nat.portRange 1024-2047 without nat.excludePorts 1024-1500, 1580-2047 holds no whole block of 64 ports: widen nat.portRange, shrink nat.excludePorts or lower nat.minPortsPerClient to 32',
    ],
    [
      'a public address inside a client subnet',
      [poolOf('internet', '10.0.0.0/24', '/etc/vpn-user-portal/config.php', 12)],
      { publicAddresses: [ip('192.0.2.1'), ip('10.0.0.1')] },
      'public address 10.0.0.1 in nat.publicAddresses lies inside the client subnet of profile "internet" (10.0.0.0/24, /etc/vpn-user-portal/config.php:12): use the server\'s public address there',
    ],
    [
      'a public address listed twice',
      SLASH24,
      { publicAddresses: [ip('192.0.2.1'), ip('192.0.2.2'), ip('192.0.2.1')] },
      'public address 192.0.2.1 appears twice in nat.publicAddresses: list each address once',
    ],
  ])('%s', (_name, pools, overrides, message) => {
    expect(mappingError(pools, settingsOf(overrides))).toBe(message);
  });

  test.each<[string, ClientPool[], string]>([
    [
      'a subnet inside another',
      [
        poolOf('internet', '10.0.0.0/24', '/etc/vpn-user-portal/config.php', 10),
        poolOf('office', '10.0.0.128/25', '/etc/openvpn/server/office-0.conf', 3),
      ],
      'client addresses 10.0.0.130-10.0.0.254 belong to both profile "internet" (10.0.0.0/24, /etc/vpn-user-portal/config.php:10) and profile "office" (10.0.0.128/25, /etc/openvpn/server/office-0.conf:3): give each profile its own range',
    ],
    [
      'the same subnet twice, named in pool order',
      [
        poolOf('b', '10.5.0.0/24', '/etc/openvpn/server/b-0.conf', 2),
        poolOf('a', '10.5.0.0/24', '/etc/openvpn/server/a-0.conf', 2),
      ],
      'client addresses 10.5.0.2-10.5.0.254 belong to both profile "b" (10.5.0.0/24, /etc/openvpn/server/b-0.conf:2) and profile "a" (10.5.0.0/24, /etc/openvpn/server/a-0.conf:2): give each profile its own range',
    ],
    [
      'a small pool after a disjoint one, inside a large earlier one',
      [
        poolOf('wide', '10.0.0.0/16', '/etc/vpn-user-portal/config.php', 5),
        poolOf('left', '10.0.1.0/24', '/etc/vpn-user-portal/config.php', 6),
        poolOf('right', '10.0.9.0/30', '/etc/vpn-user-portal/config.php', 7),
      ],
      'client addresses 10.0.1.2-10.0.1.254 belong to both profile "wide" (10.0.0.0/16, /etc/vpn-user-portal/config.php:5) and profile "left" (10.0.1.0/24, /etc/vpn-user-portal/config.php:6): give each profile its own range',
    ],
  ])('overlapping pools: %s', (_name, pools, message) => {
    expect(mappingError(pools, settingsOf({ publicAddresses: publicAddresses(70) }))).toBe(message);
  });

  test('adjacent pools do not overlap', () => {
    const pools = [poolOf('a', '10.0.0.0/25'), poolOf('b', '10.0.0.128/25')];
    expect(mapClients(pools, settingsOf()).clientCount).toBe(250);
  });
});

describe('mapClients: scale', () => {
  test('maps a /16 (65533 clients) with every client on its own block', () => {
    const settings = settingsOf({ publicAddresses: publicAddresses(70) });
    const map = mapClients([poolOf('internet', '10.0.0.0/16')], settings);
    expect(map.clientCount).toBe(65533);
    expect(map.blockSize).toBe(64);
    const seen = new Set<string>();
    for (const assignment of map.assignments()) {
      seen.add(`${assignment.publicAddress}:${assignment.firstPort}`);
    }
    expect(seen.size).toBe(65533);
    expect(map.forward(ip('10.0.255.254'))).toMatchObject({
      publicAddress: ip('192.0.2.66'),
      firstPort: 1024 + 64 * (1008 - 1 - (65532 % 1008)),
      lastPort: 1024 + 64 * (1008 - (65532 % 1008)) - 1,
    });
  });
});

describe('previousFromAssignments', () => {
  test('keeps the block size and the first entry of a client listed twice', () => {
    const previous = previousFromAssignments(128, [
      { client: 1, publicAddress: 7, firstPort: 65408 },
      { client: 2, publicAddress: 7, firstPort: 65280 },
      { client: 1, publicAddress: 8, firstPort: 1024 },
    ]);
    expect(previous.blockSize).toBe(128);
    const { bindings } = previous;
    expect(Array.from({ length: bindings.count }, (_, row) => bindingAtRow(bindings, row))).toEqual(
      [
        { client: 1, publicAddress: 7, firstPort: 65408, lastPort: 65535 },
        { client: 2, publicAddress: 7, firstPort: 65280, lastPort: 65407 },
      ],
    );
  });
});
