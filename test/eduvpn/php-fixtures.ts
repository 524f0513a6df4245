/** Config files and a position-free view of PHP trees, shared by the PHP reader's tests. */
import type { PhpValue } from '../../src/eduvpn/php-value.js';

/** A PHP value without positions: arrays as [key, value] pairs so key types and order show. */
export type Plain =
  | string
  | number
  | boolean
  | null
  | { readonly float: number }
  | { readonly opaque: string }
  | readonly (readonly [string | number, Plain])[];

export function plain(value: PhpValue): Plain {
  switch (value.kind) {
    case 'string':
    case 'int':
    case 'bool':
      return value.value;
    case 'float':
      return { float: value.value };
    case 'null':
      return null;
    case 'opaque':
      return { opaque: value.text };
    case 'array':
      return value.entries.map((entry) => [entry.key, plain(entry.value)] as const);
  }
}

/** An eduVPN 3.x portal config.php as an admin would leave it. */
export const PORTAL_CONFIG = String.raw`<?php

declare(strict_types=1);

/*
 * eduVPN portal configuration, see https://docs.eduvpn.org/server/v3/profile-config.html
 */

return [
    // how users log in
    'authModule' => 'DbAuthModule',
    'Db' => [
        'dbDsn' => 'sqlite:/var/lib/vpn-user-portal/db.sqlite',
        'dbUser' => null,
        'dbPass' => NULL,
    ],
    'adminUserIdList' => ['admin', 'o\'brien', 'DOMAIN\\user'],
    'sessionExpiry' => 'P90D',
    'WireGuard' => [
        'listenPort' => 51820,
        'setMtu' => 1392,
    ],
    'Api' => [
        'consumerList' => [],
    ],
    'ProfileList' => [
        [
            'profileId' => 'internet',
            'displayName' => 'Internet Access',
            'hostName' => 'vpn.example.org',
            'dnsServerList' => ['9.9.9.9', '2620:fe::fe'],
            'oRangeFour' => '10.42.42.0/24',
            'oRangeSix' => 'fd42::/64',
            'wRangeFour' => '10.43.43.0/24',
            'wRangeSix' => 'fd43::/64',
            'oUdpPortList' => [1194, 1195],
            'oTcpPortList' => [1194, 1195],
            'defaultGateway' => true,
        ],
        [
            'profileId' => 'office',
            'displayName' => 'Office (split tunnel)',
            'hostName' => ['vpn1.example.org', 'vpn2.example.org'],
            'nodeUrl' => ['http://10.1.0.1:41194', 'http://10.1.0.2:41194'],
            'onNode' => [0, 1],
            'wRangeFour' => ['10.44.0.0/24', '10.44.1.0/24'],
            'wRangeSix' => ['fd44:0::/64', 'fd44:1::/64'],
            'routeList' => ['192.168.1.0/24', ],
            'defaultGateway' => false,
            'aclPermissionList' => ['https://idp.example.org/groups#staff'], // '#' inside a string
        ],
        // [
        //     'profileId' => 'old',
        //     'oRangeFour' => '10.50.0.0/24',
        // ],
        /*
        [
            'profileId' => 'disabled',
        ],
        */
        [
            'profileId' => 'admin-only',
            'displayName' => "Admins \u{1F512}",
            'hostName' => 'vpn.example.org',
            'oRangeFour' => '10.45.0.0/25',
            'oRangeSix' => 'fd45::/64',
            'oUdpPortList' => [1196],
            'oTcpPortList' => [],
            'dnsDomainSearch' => ['example.org',],
        ],
    ],
    'Log' => [ 'authLog' => false, ],  # the last key
];
`;

/** What eduVPN 1.x tools wrote with var_export(). */
export const VAR_EXPORT_CONFIG = String.raw`<?php return array (
  'instanceNumber' => 1,
  'vpnProfiles' => 
  array (
    'internet' => 
    array (
      'profileNumber' => 1,
      'displayName' => 'Internet Access',
      'range' => '10.0.0.0/25',
      'range6' => 'fd00:4242:4242:4242::/64',
      'hostName' => 'vpn.example',
      'vpnProtoPorts' => 
      array (
        0 => 'udp/1194',
        1 => 'tcp/1194',
      ),
      'enableAcl' => false,
      'aclGroupList' => 
      array (
      ),
    ),
  ),
);
`;

/** Constants, concatenation and code in keys nobody needs; the profiles are literal. */
export const CONSTANTS_CONFIG = String.raw`<?php
declare(strict_types=1);
namespace Vpn\Config;
use PDO;
const SESSION_DAYS = 90;
return [
    'Db' => [
        'dbDsn' => 'sqlite:' . __DIR__ . '/../data/db.sqlite',
        'dbOptions' => [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION],
        'dbPass' => getenv('DB_PASS') ?: 'secret', // fallback
    ],
    'RadiusAuthModule' => ['replyMessage' => RADIUS_REPLY_MESSAGE],
    'sessionExpiry' => 'P' . SESSION_DAYS . 'D',
    'templateDir' => __DIR__ . '/views',
    'hook' => function (array $c): array { return [$c, 'x' => "{$c['y']}"]; },
    'ProfileList' => [
        ['profileId' => 'internet', 'oRangeFour' => '10.42.42.0/24', 'oRangeSix' => 'fd42::/64'],
    ],
];
`;
