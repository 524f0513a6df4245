/** The normalized result of reading eduVPN's files: one pool of client addresses per (sub)net. */
import type { Cidr4 } from '../net/ipv4.js';

export type VpnProtocol = 'openvpn' | 'wireguard';

/** Which eduVPN files the pools were read from (`eduvpn.source` in the config). */
export type SourceKind = 'portal' | 'profiles' | 'server-api' | 'node';

export interface PoolOrigin {
  /** The file the range was read from. */
  readonly file: string;
  /** The line of the range (or of the `server` directive) in that file, when known. */
  readonly line?: number | undefined;
  /** OpenVPN process number (0-based, UDP processes first), for OpenVPN pools. */
  readonly process?: number | undefined;
}

export interface ClientPool {
  readonly profileId: string;
  readonly protocol: VpnProtocol;
  readonly origin: PoolOrigin;
  /** The IPv4 (sub)net of this pool; network+1 is the server's own address. */
  readonly subnet4: Cidr4;
  /** First and last client address: network+2 and broadcast-1. */
  readonly first: number;
  readonly last: number;
  /** The matching IPv6 (sub)net in CIDR notation, kept for a later IPv6 mapping. */
  readonly subnet6?: string | undefined;
}

export interface Discovery {
  readonly source: SourceKind;
  /** The files that were read, in the order they were read. */
  readonly files: readonly string[];
  readonly pools: readonly ClientPool[];
}

export function clientCount(pool: ClientPool): number {
  return pool.last >= pool.first ? pool.last - pool.first + 1 : 0;
}
