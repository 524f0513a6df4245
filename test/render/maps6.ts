/** The IPv6 maps the render tests share. */
import { mapClients6, mapPrefix6, type PortMap6, type PrefixMap6 } from '../../src/mapping/map6.js';
import { ip6, pool6 } from '../mapping/fixtures6.js';

/**
 * 61 WireGuard clients in fd87:12::/64 and 5 OpenVPN clients in a /112, 1024 ports each on two
 * public addresses (63 blocks per address): a tree, and a spill-over to the second address.
 */
export function treeMap6(): PortMap6 {
  return mapClients6(
    [
      pool6('internet', '10.87.12.0/26', 'fd87:12::/64'),
      pool6('office', '10.87.13.0/29', 'fd87:13::/112', 'openvpn'),
    ],
    {
      publicAddresses: [ip6('2001:db8::1'), ip6('2001:db8::2')],
      portRange: { first: 1024, last: 65535 },
      excludePorts: [],
      portsPerClient: 1024,
      minPortsPerClient: 64,
    },
  );
}

/** The same clients in ranges with their own subnet bits, one address each in a /56. */
export function prefixMap6(): PrefixMap6 {
  return mapPrefix6(
    [
      pool6('internet', '10.87.12.0/26', 'fd87:12:0:1::/64'),
      pool6('office', '10.87.13.0/29', 'fd87:12:0:2::/112', 'openvpn'),
    ],
    { network: ip6('2001:db8:100::'), prefix: 56 },
  );
}
