/**
 * IPv6 prefix mode read backwards: NETMAP (ip6tables-extensions(8)) and nft `snat ip6 prefix to`
 * replace a source's bits above the `--to` prefix's length with the prefix and keep the bits
 * below it. So a public address names the one client of a range whose kept bits it carries.
 */
import type { Netmap6 } from '../render/read-rules.js';
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
 * exists then, and the configuration refuses it (nat6.publicPrefix too small).
 */
export function netmapClient(netmap: Netmap6, address: bigint): bigint | undefined {
  const parts = parsed(netmap);
  if (!parts || !cidr6Contains(parts.to, address) || parts.range.prefix < parts.to.prefix) {
    return undefined;
  }
  const kept = address & (~prefixMask6(parts.to.prefix) & ALL_ONES);
  const client = (parts.range.network & prefixMask6(parts.to.prefix)) | kept;
  return cidr6Contains(parts.range, client) ? client : undefined;
}

/** The public address a client of the netmap's range leaves with, or undefined. */
export function netmapPublic(netmap: Netmap6, client: bigint): bigint | undefined {
  const parts = parsed(netmap);
  if (!parts || !cidr6Contains(parts.range, client)) return undefined;
  const mask = prefixMask6(parts.to.prefix);
  return parts.to.network | (client & (~mask & ALL_ONES));
}
