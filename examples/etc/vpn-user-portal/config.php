<?php

declare(strict_types=1);

/*
 * The bundled example of traceable-nat: an eduVPN 3.x single server's
 * /etc/vpn-user-portal/config.php. The OpenVPN and WireGuard files under
 * examples/etc are what this server's node part generated from it.
 *
 * Clients: internet 4 x 61 (OpenVPN) + 253 (WireGuard), office 2 x 61
 * (OpenVPN), research 253 (WireGuard): 872 in all.
 */

return [
    'sessionExpiry' => 'P90D',
    'authModule' => 'DbAuthModule',
    'adminUserIdList' => ['admin'],

    'Db' => [
        'dbDsn' => 'sqlite:///var/lib/vpn-user-portal/db.sqlite',
    ],

    'WireGuard' => [
        'listenPort' => 51820,
        'setMtu' => 1392,
    ],

    'ProfileList' => [
        // Everyone: all traffic through the VPN, both protocols.
        // 2 UDP + 2 TCP OpenVPN processes share 10.42.0.0/24 (a /26 each).
        [
            'profileId' => 'internet',
            'displayName' => 'Internet Access',
            'hostName' => 'vpn.example.org',
            'dnsServerList' => ['9.9.9.9', '2620:fe::fe'],
            'defaultGateway' => true,
            'oRangeFour' => '10.42.0.0/24',
            'oRangeSix' => 'fd42::/64',
            'oUdpPortList' => [1194, 1195],
            'oTcpPortList' => [1194, 1195],
            'wRangeFour' => '10.43.0.0/24',
            'wRangeSix' => 'fd43::/64',
        ],

        // Staff: OpenVPN only, one UDP and one TCP process.
        [
            'profileId' => 'office',
            'displayName' => 'Office',
            'hostName' => 'vpn.example.org',
            'dnsServerList' => ['@GW4@'],
            'defaultGateway' => true,
            'oRangeFour' => '10.50.0.0/25',
            'oRangeSix' => 'fd50::/64',
            'oUdpPortList' => [1196],
            'oTcpPortList' => [1196],
            'aclPermissionList' => ['staff'],
        ],

        // Researchers: WireGuard only.
        [
            'profileId' => 'research',
            'displayName' => 'Research',
            'hostName' => 'vpn.example.org',
            'defaultGateway' => true,
            'wRangeFour' => '172.20.0.0/24',
            'wRangeSix' => 'fd20::/64',
        ],
    ],
];
