import { posix } from 'node:path';
import { parsePhpConfig } from '../../src/eduvpn/php.js';
import { parseServerApiConfig } from '../../src/eduvpn/server-api.js';
import { FIXTURES, fixture, lineOf, poolRow, sourceErrorOf } from './pool-helpers.js';

const API = posix.join(FIXTURES, 'server-api-2x/config.php');
const NODE = posix.join(FIXTURES, 'server-api-2x/node-config.php');

const INTERNET = [
  'internet openvpn/0 server-api-2x/config.php:18 10.0.0.0/26 10.0.0.2-10.0.0.62 fd00:4242:4242:4242::/112',
  'internet openvpn/1 server-api-2x/config.php:18 10.0.0.64/26 10.0.0.66-10.0.0.126 fd00:4242:4242:4242::1:0/112',
];
const OFFICE = [
  'office openvpn/0 server-api-2x/config.php:37 10.0.1.0/26 10.0.1.2-10.0.1.62 fd00:4242:4242:4243::/112',
  'office openvpn/1 server-api-2x/config.php:37 10.0.1.64/26 10.0.1.66-10.0.1.126 fd00:4242:4242:4243::1:0/112',
  'office openvpn/2 server-api-2x/config.php:37 10.0.1.128/26 10.0.1.130-10.0.1.190 fd00:4242:4242:4243::2:0/112',
  'office openvpn/3 server-api-2x/config.php:37 10.0.1.192/26 10.0.1.194-10.0.1.254 fd00:4242:4242:4243::3:0/112',
];
const ADMIN = [
  'admin openvpn/0 server-api-2x/config.php:54 192.168.200.0/26 192.168.200.2-192.168.200.62 fd00:4242:4242:4244::/112',
];

describe('parseServerApiConfig (eduVPN 2.x)', () => {
  it('splits each range into one subnet per vpnProtoPorts entry, in list order', () => {
    const pools = parseServerApiConfig(fixture('server-api-2x/config.php'), API);
    expect(pools.map((pool) => poolRow(pool))).toEqual([...INTERNET, ...OFFICE, ...ADMIN]);
  });

  it("keeps only the profiles in the node's profileList", () => {
    const node = {
      value: parsePhpConfig(fixture('server-api-2x/node-config.php'), NODE),
      file: NODE,
    };
    const pools = parseServerApiConfig(fixture('server-api-2x/config.php'), API, node);
    expect(pools.map((pool) => poolRow(pool))).toEqual([...INTERNET, ...ADMIN]);
  });

  it('serves every profile when the node config has no profileList', () => {
    const node = { value: parsePhpConfig("<?php return ['apiUser' => 'x'];", NODE), file: NODE };
    expect(parseServerApiConfig(fixture('server-api-2x/config.php'), API, node)).toHaveLength(7);
  });

  it("uses 2.x's default udp/1194 + tcp/1194 without vpnProtoPorts", () => {
    const text = "<?php return ['vpnProfiles' => ['a' => ['range' => '10.9.0.0/24']]];";
    expect(parseServerApiConfig(text, 'c.php').map((pool) => poolRow(pool, ''))).toEqual([
      'a openvpn/0 c.php:1 10.9.0.0/25 10.9.0.2-10.9.0.126 -',
      'a openvpn/1 c.php:1 10.9.0.128/25 10.9.0.130-10.9.0.254 -',
    ]);
  });
});

function api(profiles: string): string {
  return `<?php\nreturn [\n    'vpnProfiles' => [\n${profiles}\n    ],\n];\n`;
}

describe('parseServerApiConfig refuses bad input with file, line and what to do', () => {
  it.each([
    {
      name: 'three vpnProtoPorts',
      text: api(
        "        'a' => [\n            'range' => '10.0.0.0/24',\n            'vpnProtoPorts' => ['udp/1194', 'udp/1195', 'tcp/1194'],\n        ],",
      ),
      needle: 'vpnProtoPorts',
      message:
        /vpnProtoPorts of profile 'a' has 3 entries, one OpenVPN process each, but eduVPN needs 1, 2, 4, 8, 16, 32 or 64/,
    },
    {
      name: 'a vpnProtoPorts entry that is not proto/port',
      text: api(
        "        'a' => [\n            'range' => '10.0.0.0/24',\n            'vpnProtoPorts' => ['udp:1194'],\n        ],",
      ),
      needle: 'udp:1194',
      message:
        /vpnProtoPorts entry 'udp:1194' of profile 'a' is not a protocol and port: write it like udp\/1194/,
    },
    {
      name: 'a numeric key',
      text: api("        0 => [\n            'range' => '10.0.0.0/24',\n        ],"),
      needle: '0 =>',
      message: /vpnProfiles is keyed by profile id, but this entry has the number 0 as key/,
    },
    {
      name: 'no range',
      text: api("        'a' => [\n            'range6' => 'fd00::/64',\n        ],"),
      needle: "'a' =>",
      message: /profile 'a' has no 'range': add its IPv4 client range/,
    },
    {
      name: 'host bits set',
      text: api("        'a' => [\n            'range' => '10.0.0.5/24',\n        ],"),
      needle: '10.0.0.5/24',
      message:
        /range of profile 'a' '10\.0\.0\.5\/24' has host bits set: write the network form 10\.0\.0\.0\/24/,
    },
    {
      name: 'a public range',
      text: api("        'a' => [\n            'range' => '198.51.100.0/24',\n        ],"),
      needle: '198.51.100.0/24',
      message: /198\.51\.100\.0\/24 is not a private range/,
    },
    {
      name: 'overlapping profiles',
      text: api(
        "        'a' => ['range' => '10.0.0.0/24'],\n        'b' => ['range' => '10.0.0.128/25'],",
      ),
      needle: "'b' =>",
      message:
        /client range 10\.0\.0\.128\/26 \(OpenVPN process 0 of profile 'b', .*\) overlaps 10\.0\.0\.128\/25 \(OpenVPN process 1 of profile 'a', .*\)/,
    },
  ])('$name', ({ text, needle, message }) => {
    const error = sourceErrorOf(() => parseServerApiConfig(text, '/etc/vpn-server-api/config.php'));
    expect(error.where?.file).toBe('/etc/vpn-server-api/config.php');
    expect(error.where?.line).toBe(lineOf(text, needle));
    expect(error.message).toMatch(message);
  });

  it('refuses a profileList naming a profile vpnProfiles does not define', () => {
    const nodeText = "<?php\nreturn [\n    'profileList' => ['internet', 'ofice'],\n];\n";
    const node = { value: parsePhpConfig(nodeText, NODE), file: NODE };
    const error = sourceErrorOf(() =>
      parseServerApiConfig(fixture('server-api-2x/config.php'), API, node),
    );
    expect(error.where).toEqual({ file: NODE, line: 3, column: 35 });
    expect(error.message).toMatch(
      /profileList names 'ofice', which vpnProfiles in .*config\.php does not define: fix the spelling or remove it/,
    );
  });

  it('says so when there is no vpnProfiles', () => {
    const error = sourceErrorOf(() =>
      parseServerApiConfig("<?php return ['vpnCaPath' => '/usr/bin/vpn-ca'];", 'c.php'),
    );
    expect(error.where).toEqual({ file: 'c.php', line: 1, column: 14 });
    expect(error.message).toMatch(/defines no 'vpnProfiles'/);
  });
});
