import { posix } from 'node:path';
import { parsePortalConfig } from '../../src/eduvpn/portal.js';
import { FIXTURES, fixture, lineOf, poolRow, sourceErrorOf } from './pool-helpers.js';

const SINGLE = posix.join(FIXTURES, 'portal-3x/config.php');
const MULTI = posix.join(FIXTURES, 'portal-multinode/config.php');

describe('parsePortalConfig on a 3.x single server', () => {
  it('splits OpenVPN ranges per process (UDP first) and keeps WireGuard ranges whole', () => {
    const pools = parsePortalConfig(fixture('portal-3x/config.php'), SINGLE, 0);
    expect(pools.map((pool) => poolRow(pool))).toEqual([
      'internet openvpn/0 portal-3x/config.php:46 10.42.42.0/25 10.42.42.2-10.42.42.126 fd42:4242:4242:4242::/112',
      'internet openvpn/1 portal-3x/config.php:46 10.42.42.128/25 10.42.42.130-10.42.42.254 fd42:4242:4242:4242::1:0/112',
      'employees openvpn/0 portal-3x/config.php:58 10.43.0.0/24 10.43.0.2-10.43.0.254 fd43:0:0:1::/112',
      'employees openvpn/1 portal-3x/config.php:58 10.43.1.0/24 10.43.1.2-10.43.1.254 fd43::1:0:0:1:0/112', // RFC 5952: the first of two equal zero runs is compressed
      'employees openvpn/2 portal-3x/config.php:58 10.43.2.0/24 10.43.2.2-10.43.2.254 fd43::1:0:0:2:0/112',
      'employees openvpn/3 portal-3x/config.php:58 10.43.3.0/24 10.43.3.2-10.43.3.254 fd43::1:0:0:3:0/112',
      'research wireguard portal-3x/config.php:80 10.44.0.0/24 10.44.0.2-10.44.0.254 fd44::/64',
      'admin openvpn/0 portal-3x/config.php:89 172.16.10.0/24 172.16.10.2-172.16.10.254 fd10:10::/112',
      'admin wireguard portal-3x/config.php:93 172.16.11.0/28 172.16.11.2-172.16.11.14 fd10:11::/64',
    ]);
  });

  it('is not served by another node number (onNode defaults to [0])', () => {
    expect(parsePortalConfig(fixture('portal-3x/config.php'), SINGLE, 1)).toEqual([]);
  });

  it('reads a config that uses constants and __DIR__ in keys it does not need', () => {
    const file = posix.join(FIXTURES, 'portal-constants/config.php');
    const pools = parsePortalConfig(fixture('portal-constants/config.php'), file, 0);
    expect(pools.map((pool) => poolRow(pool))).toEqual([
      'default openvpn/0 portal-constants/config.php:35 10.8.0.0/25 10.8.0.2-10.8.0.126 fd08::/112',
      'default openvpn/1 portal-constants/config.php:35 10.8.0.128/25 10.8.0.130-10.8.0.254 fd08::1:0/112',
      'default wireguard portal-constants/config.php:37 10.9.0.0/24 10.9.0.2-10.9.0.254 fd09::/64',
    ]);
  });
});

describe('parsePortalConfig on a multi-node controller', () => {
  it.each([
    [
      0,
      [
        'internet openvpn/0 portal-multinode/config.php:21 10.10.0.0/24 10.10.0.2-10.10.0.254 fd10::/112',
        'lab openvpn/0 portal-multinode/config.php:43 10.20.0.0/25 10.20.0.2-10.20.0.126 fd20::/112',
        'lab openvpn/1 portal-multinode/config.php:43 10.20.0.128/25 10.20.0.130-10.20.0.254 fd20::1:0/112',
        'guest wireguard portal-multinode/config.php:58 100.64.8.0/22 100.64.8.2-100.64.11.254 fd64:8::/64',
      ],
    ],
    [
      1,
      [
        'internet openvpn/0 portal-multinode/config.php:21 10.10.1.0/24 10.10.1.2-10.10.1.254 fd10:0:0:1::/112',
        'office wireguard portal-multinode/config.php:33 10.61.60.0/24 10.61.60.2-10.61.60.254 fd61:60::/64',
        'guest wireguard portal-multinode/config.php:58 100.64.8.0/22 100.64.8.2-100.64.11.254 fd64:8::/64',
      ],
    ],
    [
      2,
      [
        'office wireguard portal-multinode/config.php:33 10.7.192.0/24 10.7.192.2-10.7.192.254 fd07:192::/64',
        'guest wireguard portal-multinode/config.php:58 100.64.8.0/22 100.64.8.2-100.64.11.254 fd64:8::/64',
      ],
    ],
    [3, []],
  ])('node %i gets the ranges at its position in onNode', (node, rows) => {
    const pools = parsePortalConfig(fixture('portal-multinode/config.php'), MULTI, node);
    expect(pools.map((pool) => poolRow(pool))).toEqual(rows);
  });
});

/** A portal config.php whose ProfileList holds `profiles` (PHP source of the entries). */
function portal(...profiles: string[]): string {
  return `<?php\nreturn [\n    'ProfileList' => [\n${profiles.join(',\n')}\n    ],\n];\n`;
}

function profile(id: string, ...lines: string[]): string {
  return `        [\n            'profileId' => '${id}',\n${lines.map((line) => `            ${line},\n`).join('')}        ]`;
}

const OPENVPN = (four: string, six = 'fd00::/64') => [
  `'oRangeFour' => '${four}'`,
  `'oRangeSix' => '${six}'`,
];

describe('parsePortalConfig refuses bad profiles with file, line and what to do', () => {
  const cases: {
    name: string;
    text: string;
    needle: string;
    occurrence?: number;
    column?: number;
    message: RegExp;
  }[] = [
    {
      name: 'an address that is not one',
      text: portal(profile('a', ...OPENVPN('10.0.0.300/24'))),
      needle: '10.0.0.300/24',
      column: 29,
      message:
        /oRangeFour of profile 'a' '10\.0\.0\.300\/24' is not an IPv4 range: write it as network\/prefix/,
    },
    {
      name: 'host bits set',
      text: portal(profile('a', ...OPENVPN('10.0.0.1/24'))),
      needle: '10.0.0.1/24',
      message: /'10\.0\.0\.1\/24' has host bits set: write the network form 10\.0\.0\.0\/24$/,
    },
    {
      name: 'only oRangeFour',
      text: portal(profile('a', "'oRangeFour' => '10.0.0.0/24'")),
      needle: 'oRangeFour',
      message:
        /profile 'a' sets oRangeFour but not oRangeSix, so eduVPN keeps OpenVPN off for it and traceable-nat refuses to guess: set both oRangeFour and oRangeSix, or neither/,
    },
    {
      name: 'only wRangeSix',
      text: portal(profile('a', "'wRangeSix' => 'fd00::/64'")),
      needle: 'wRangeSix',
      message:
        /sets wRangeSix but not wRangeFour, so eduVPN keeps WireGuard off .* set both wRangeFour and wRangeSix, or neither/,
    },
    {
      name: 'a range list longer than onNode',
      text: portal(
        profile(
          'a',
          "'onNode' => [0, 1]",
          "'wRangeFour' => ['10.0.0.0/24', '10.0.1.0/24', '10.0.2.0/24']",
          "'wRangeSix' => 'fd00::/64'",
        ),
      ),
      needle: "'wRangeFour'",
      message:
        /wRangeFour of profile 'a' lists 3 ranges but onNode has 2 nodes: give one range per onNode entry/,
    },
    {
      name: 'a range list shorter than the nodeUrl default',
      text: portal(
        profile(
          'a',
          "'nodeUrl' => ['http://a:41194', 'http://b:41194']",
          "'oRangeFour' => ['10.0.0.0/24']",
          "'oRangeSix' => 'fd00::/64'",
        ),
      ),
      needle: "'oRangeFour'",
      message: /oRangeFour of profile 'a' lists 1 ranges but onNode has 2 nodes/,
    },
    {
      name: 'a range too small for its processes',
      text: portal(
        profile(
          'a',
          ...OPENVPN('10.0.0.0/29'),
          "'oUdpPortList' => [1194, 1195]",
          "'oTcpPortList' => [1194, 1195]",
        ),
      ),
      needle: '10.0.0.0/29',
      message:
        /10\.0\.0\.0\/29 is too small for 4 OpenVPN processes: each needs a subnet of at least 4 addresses, so use a \/28 or larger, or fewer ports/,
    },
    {
      name: 'a WireGuard range without room for a client',
      text: portal(profile('a', "'wRangeFour' => '10.0.0.0/31'", "'wRangeSix' => 'fd00::/64'")),
      needle: '10.0.0.0/31',
      message:
        /wRangeFour of profile 'a' 10\.0\.0\.0\/31 is too small: a client range needs at least 4 addresses/,
    },
    {
      name: 'three processes',
      text: portal(
        profile(
          'a',
          ...OPENVPN('10.0.0.0/24'),
          "'oUdpPortList' => [1194, 1195]",
          "'oTcpPortList' => [1194]",
        ),
      ),
      needle: 'oUdpPortList',
      message:
        /profile 'a' has 2 UDP and 1 TCP ports, that is 3 OpenVPN processes, but eduVPN needs 1, 2, 4, 8, 16, 32 or 64/,
    },
    {
      name: 'more than 64 processes',
      text: portal(
        profile(
          'a',
          ...OPENVPN('10.0.0.0/16'),
          `'oUdpPortList' => [${Array.from({ length: 64 }, (_, n) => 2000 + n).join(', ')}]`,
          `'oTcpPortList' => [${Array.from({ length: 64 }, (_, n) => 2000 + n).join(', ')}]`,
        ),
      ),
      needle: 'oUdpPortList',
      message: /that is 128 OpenVPN processes/,
    },
    {
      name: 'no processes at all',
      text: portal(
        profile('a', ...OPENVPN('10.0.0.0/24'), "'oUdpPortList' => []", "'oTcpPortList' => []"),
      ),
      needle: 'oUdpPortList',
      message: /has 0 UDP and 0 TCP ports, that is 0 OpenVPN processes/,
    },
    {
      name: 'overlapping profiles',
      text: portal(
        profile('first', ...OPENVPN('10.0.0.0/16')),
        profile('second', "'wRangeFour' => '10.0.200.0/24'", "'wRangeSix' => 'fd01::/64'"),
      ),
      needle: '10.0.200.0/24',
      message:
        /client range 10\.0\.200\.0\/24 \(WireGuard of profile 'second', .*config\.php:\d+\) overlaps 10\.0\.128\.0\/17 \(OpenVPN process 1 of profile 'first', .*config\.php:\d+\): give every profile its own range/,
    },
    {
      name: 'a public range',
      text: portal(profile('a', "'wRangeFour' => '145.100.0.0/24'", "'wRangeSix' => 'fd00::/64'")),
      needle: '145.100.0.0/24',
      message:
        /wRangeFour of profile 'a' 145\.100\.0\.0\/24 is not a private range, .*10\.0\.0\.0\/8, 172\.16\.0\.0\/12, 192\.168\.0\.0\/16, 100\.64\.0\.0\/10\): give the profile a private range/,
    },
    {
      name: 'a duplicate profile id',
      text: portal(
        profile('same', ...OPENVPN('10.0.0.0/24')),
        profile('same', ...OPENVPN('10.1.0.0/24', 'fd01::/64')),
      ),
      needle: "'same'",
      occurrence: 2,
      message:
        /profile id 'same' is also used at .*config\.php:5:\d+: give every profile its own profileId/,
    },
    {
      name: 'a range the reader cannot evaluate',
      text: portal(
        profile('a', "'oRangeFour' => BASE_NET . '.0/24'", "'oRangeSix' => 'fd00::/64'"),
      ),
      needle: 'BASE_NET',
      message:
        /oRangeFour of profile 'a' must be a string or a list of strings, but it is the expression .*BASE_NET.*write the value literally/,
    },
    {
      name: 'a profile without id',
      text: portal(`        ['oRangeFour' => '10.0.0.0/24', 'oRangeSix' => 'fd00::/64']`),
      needle: "['oRangeFour'",
      message: /this profile has no 'profileId': add one/,
    },
    {
      name: 'a profile id with a space',
      text: portal(profile('my profile', ...OPENVPN('10.0.0.0/24'))),
      needle: 'my profile',
      message: /profile id 'my profile' is not valid: use letters, digits, '-' and '\.' only/,
    },
    {
      name: 'an IPv6 range that is not one',
      text: portal(profile('a', ...OPENVPN('10.0.0.0/24', 'fd00::zz/64'))),
      needle: 'fd00::zz',
      message: /oRangeSix of profile 'a' 'fd00::zz\/64' is not an IPv6 range/,
    },
    {
      name: 'an IPv6 range too small for the /112 per process',
      text: portal(profile('a', ...OPENVPN('10.0.0.0/24', 'fd00::/112'))),
      needle: 'fd00::/112',
      message:
        /oRangeSix of profile 'a' fd00::\/112 is too small for 2 OpenVPN processes of a \/112 each: use a \/111 or larger/,
    },
  ];

  it.each(cases)('$name', ({ text, needle, occurrence, column, message }) => {
    const line = lineOf(text, needle, occurrence);
    const error = sourceErrorOf(() =>
      parsePortalConfig(text, '/etc/vpn-user-portal/config.php', 0),
    );
    expect(error.where?.file).toBe('/etc/vpn-user-portal/config.php');
    expect(error.where?.line).toBe(line);
    if (column !== undefined) expect(error.where?.column).toBe(column);
    expect(error.message).toMatch(message);
    expect(error.message.startsWith(`/etc/vpn-user-portal/config.php:${line}`)).toBe(true);
  });

  it('says so when there is no ProfileList at all', () => {
    const error = sourceErrorOf(() =>
      parsePortalConfig("<?php\nreturn ['Db' => []];\n", 'config.php', 0),
    );
    expect(error.where).toEqual({ file: 'config.php', line: 2, column: 8 });
    expect(error.message).toMatch(/defines no 'ProfileList'.*JSON files in the profiles directory/);
  });

  it('leaves a bad profile alone when this node does not serve it', () => {
    const text = portal(profile('elsewhere', "'onNode' => [4]", ...OPENVPN('8.8.8.0/24')));
    expect(parsePortalConfig(text, 'config.php', 0)).toEqual([]);
  });
});
