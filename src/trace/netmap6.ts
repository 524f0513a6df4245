/**
 * IPv6 prefix mode read backwards: NETMAP (ip6tables-extensions(8)) and nft `snat ip6 prefix to`
 * replace a source's bits above the `--to` prefix's length with the prefix and keep the bits
 * below it. So a public address names the one client of a range whose kept bits it carries.
 */
import type { Netmap6 } from '../render/read-rules.js';
import type { ClientRange6 } from '../mapping/map6.js';
import { cidr6Contains, parseCidr6, prefixMask6, type Cidr6 } from '../net/ipv6.js';

const ALL_ONES = (1n << 128n) - 1n;

function parsed(netmap: Netmap6): { range: Cidr6; to: Cidr6 } | undefined {
  const range = parseCidr6(netmap.range);
  const to = parseCidr6(netmap.to);
  return range && to ? { range, to } : undefined;
}

/** Whether `address` lies in the public prefix of the netmap. */
export function netmapUses(netmap: Netmap6, address: bigint): boolean {
  const parts = parsed(netmap);
  return parts !== undefined && cidr6Contains(parts.to, address);
}

/**
 * The client of the netmap's range that leaves as `address`, or undefined when none does. A
 * range wider than the public prefix would map many clients to one address: no single answer
 * exists then, and the configuration refuses it (nat6.publicPrefix too small). NETMAP
 * translates every address of the range, but only some are clients': those `ranges` (the
 * archive header's, see ClientRange6) give, and without them (an older archive) any but the
 * range's network and the VPN server's own address (network + 1).
 */
export function netmapClient(
  netmap: Netmap6,
  address: bigint,
  ranges?: readonly ClientRange6[],
): bigint | undefined {
  const parts = parsed(netmap);
  if (!parts || !cidr6Contains(parts.to, address) || parts.range.prefix < parts.to.prefix) {
    return undefined;
  }
  const kept = address & (~prefixMask6(parts.to.prefix) & ALL_ONES);
  const client = (parts.range.network & prefixMask6(parts.to.prefix)) | kept;
  if (!cidr6Contains(parts.range, client)) return undefined;
  const isClient =
    ranges === undefined
      ? client - parts.range.network >= 2n
      : ranges.some(
          ({ range, first, last }) =>
            cidr6Contains(range, client) &&
            client - range.network >= first &&
            client - range.network <= last,
        );
  return isClient ? client : undefined;
}

/** The client ranges an archive header's settings record (nat6.clientRanges, see formatClientRange). */
export function clientRangesOf(
  settings: Readonly<Record<string, unknown>>,
): ClientRange6[] | undefined {
  const nat6 = settings.nat6;
  if (typeof nat6 !== 'object' || nat6 === null) return undefined;
  const list = (nat6 as Record<string, unknown>).clientRanges;
  if (!Array.isArray(list)) return undefined;
  const ranges: ClientRange6[] = [];
  for (const text of list) {
    const match = typeof text === 'string' ? /^(\S+) (\d+)-(\d+)$/.exec(text) : null;
    const range = match?.[1] === undefined ? undefined : parseCidr6(match[1]);
    // A header that does not parse gives no ranges: the older rule applies.
    if (!range || match?.[2] === undefined || match[3] === undefined) return undefined;
    ranges.push({ range, first: BigInt(match[2]), last: BigInt(match[3]) });
  }
  return ranges;
}

/** The public address a client of the netmap's range leaves with, or undefined. */
export function netmapPublic(netmap: Netmap6, client: bigint): bigint | undefined {
  const parts = parsed(netmap);
  if (!parts || !cidr6Contains(parts.range, client)) return undefined;
  const mask = prefixMask6(parts.to.prefix);
  return parts.to.network | (client & (~mask & ALL_ONES));
}
