/** Builders for client pools and NAT settings used by the mapping tests. */
import type { ClientPool } from '../../src/eduvpn/pool.js';
import type { NatSettings } from '../../src/mapping/types.js';
import { broadcastOf, parseCidr4, parseIpv4 } from '../../src/net/ipv4.js';

export const PORTAL_CONFIG = '/etc/vpn-user-portal/config.php';

/** A pool as eduVPN hands it out: network+2 up to broadcast-1. */
export function poolOf(
  profileId: string,
  cidr: string,
  file = PORTAL_CONFIG,
  line = 1,
): ClientPool {
  const subnet4 = parseCidr4(cidr, true);
  if (!subnet4) throw new Error(`bad test CIDR ${cidr}`);
  return {
    profileId,
    protocol: 'wireguard',
    origin: { file, line },
    subnet4,
    first: subnet4.network + 2,
    last: broadcastOf(subnet4) - 1,
  };
}

export function ip(text: string): number {
  const address = parseIpv4(text);
  if (address === undefined) throw new Error(`bad test address ${text}`);
  return address;
}

/** 192.0.2.1, 192.0.2.2, ... (TEST-NET-1, never inside a client pool of 10/8). */
export function publicAddresses(count: number): number[] {
  return Array.from({ length: count }, (_, index) => ip('192.0.2.0') + index + 1);
}

export function settingsOf(overrides: Partial<NatSettings> = {}): NatSettings {
  return {
    publicAddresses: publicAddresses(1),
    portRange: { first: 1024, last: 65535 },
    excludePorts: [],
    portsPerClient: 'auto',
    minPortsPerClient: 64,
    ...overrides,
  };
}
