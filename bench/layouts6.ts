/**
 * The IPv6 layouts (issue 14), rendered with the project's own nat6 renderers: port blocks as
 * the ip6tables tree or the nftables verdict map to /124 leaves, and prefix mode as one NETMAP
 * or `snat ip6 prefix to` rule. As for IPv4, a MASQUERADE rule for the reference client comes
 * first; eduVPN's own IPv6 masquerade (`-s fc00::/7`, README "IPv6") comes last.
 */
import type { ClientPool } from '../src/eduvpn/pool.js';
import { mapClients6, mapPrefix6, type Map6 } from '../src/mapping/map6.js';
import { formatIpv6, parseCidr6, parseIpv6 } from '../src/net/ipv6.js';
import { renderIp6tablesChains } from '../src/render/iptables6.js';
import { renderNftTable6 } from '../src/render/nftables6.js';
import {
  natTable,
  nftFloor,
  OUT_INTERFACE,
  PORTS_PER_CLIENT,
  publicAddressesFor,
  wireguardPool,
} from './layouts.js';
import { SITE6 } from './netns.js';

/** eduVPN's IPv6 NAT: `-s fc00::/7 -o eth0 -j MASQUERADE` in rules.v6, the same in nftables. */
const EDUVPN_SOURCE6 = 'fc00::/7';
const FIRST_PUBLIC_ADDRESS6 = parseIpv6('2001:db8:100::1') ?? 0n;
/** Prefix mode: the /64 client range keeps its 64 host bits in this /64. */
export const PUBLIC_PREFIX6 = '2001:db8:180::/64';
const PORT_RANGE = { first: 1024, last: 65535 };

/** A WireGuard pool of `cidr4` with its IPv6 range, as eduVPN's profile config pairs them. */
export function wireguardPool6(profileId: string, cidr4: string, cidr6: string): ClientPool {
  return { ...wireguardPool(profileId, cidr4), subnet6: cidr6 };
}

/** The IPv6 twin of an IPv4 client of `pool` (src/mapping/twin6.ts: same offset). */
export function twinOf(pool: ClientPool, client4: number): string {
  const network6 = parseCidr6(pool.subnet6 ?? '')?.network ?? 0n;
  return formatIpv6(network6 + BigInt(client4 - pool.subnet4.network));
}

export type Mode6 = 'ports' | 'prefix';

/** What `apply` would map for nat6 in this mode: as many public addresses as IPv4 needs. */
export function mapPool6(pool: ClientPool, mode: Mode6): Map6 {
  if (mode === 'prefix') {
    const prefix = parseCidr6(PUBLIC_PREFIX6, true);
    if (!prefix) throw new Error(`${PUBLIC_PREFIX6} is not a network`);
    return mapPrefix6([pool], prefix);
  }
  const count = publicAddressesFor(pool.last - pool.first + 1).length;
  return mapClients6([pool], {
    publicAddresses: Array.from({ length: count }, (_, i) => FIRST_PUBLIC_ADDRESS6 + BigInt(i)),
    portRange: PORT_RANGE,
    excludePorts: [],
    portsPerClient: 'auto',
    minPortsPerClient: PORTS_PER_CLIENT,
  });
}

export type LayoutKey6 = 'masquerade' | 'tree' | 'nft' | 'netmap' | 'nft-prefix';

export interface ConnectLayout6 {
  readonly key: LayoutKey6;
  readonly label: string;
  /** The mapping it renders; none for plain MASQUERADE. */
  readonly mode: Mode6 | undefined;
  readonly tool: 'ip6tables' | 'ip6tables-legacy' | 'nft';
  render(map: Map6): string;
}

const options = { outInterface: OUT_INTERFACE };
const reference = SITE6.referenceNet;

function ip6tablesText(map: Map6): string {
  return natTable(renderIp6tablesChains(map, options), reference, EDUVPN_SOURCE6);
}

function nftText(map: Map6): string {
  return nftFloor('ip6', reference, EDUVPN_SOURCE6) + renderNftTable6(map, options);
}

export function connectLayouts6(legacy: boolean): ConnectLayout6[] {
  const layouts: ConnectLayout6[] = [
    {
      key: 'masquerade',
      label: '(a) plain MASQUERADE, ip6tables',
      mode: undefined,
      tool: 'ip6tables',
      render: () => natTable(undefined, reference, EDUVPN_SOURCE6),
    },
    {
      key: 'tree',
      label: '(c) port blocks: our tree, ip6tables',
      mode: 'ports',
      tool: 'ip6tables',
      render: ip6tablesText,
    },
  ];
  if (legacy) {
    layouts.push({
      key: 'tree',
      label: '(c) port blocks: our tree, ip6tables-legacy',
      mode: 'ports',
      tool: 'ip6tables-legacy',
      render: ip6tablesText,
    });
  }
  layouts.push(
    {
      key: 'nft',
      label: '(d) port blocks: our nftables vmap',
      mode: 'ports',
      tool: 'nft',
      render: nftText,
    },
    {
      key: 'netmap',
      label: '(e) prefix: NETMAP, ip6tables',
      mode: 'prefix',
      tool: 'ip6tables',
      render: ip6tablesText,
    },
    {
      key: 'nft-prefix',
      label: '(f) prefix: snat prefix, nftables',
      mode: 'prefix',
      tool: 'nft',
      render: nftText,
    },
  );
  return layouts;
}
