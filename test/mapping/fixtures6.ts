/** Builders for pools with IPv6 ranges, for the IPv6 mapping tests. */
import type { ClientPool, VpnProtocol } from '../../src/eduvpn/pool.js';
import { parseIpv6 } from '../../src/net/ipv6.js';
import { poolOf } from './fixtures.js';

export function pool6(
  profileId: string,
  cidr4: string,
  cidr6: string | undefined,
  protocol: VpnProtocol = 'wireguard',
): ClientPool {
  return { ...poolOf(profileId, cidr4), protocol, subnet6: cidr6 };
}

export function ip6(text: string): bigint {
  const address = parseIpv6(text);
  if (address === undefined) throw new Error(`bad test address ${text}`);
  return address;
}
