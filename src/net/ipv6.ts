/**
 * IPv6 addresses as unsigned 128-bit bigints. Parsing and validation go through ip-address;
 * formatting (RFC 5952, what ip6tables-save and nft print) is done here because it runs once
 * per client and a library object per address would dominate rendering time.
 */
import { Address6 } from 'ip-address';

export interface Cidr6 {
  /** The network address (host bits zero). */
  readonly network: bigint;
  readonly prefix: number;
}

const ALL_ONES = (1n << 128n) - 1n;

/** IPv4-mapped addresses (RFC 4291 2.5.5.2): an IPv4 address written as IPv6. */
const IPV4_MAPPED: Cidr6 = { network: 0xffff00000000n, prefix: 96 };

export function prefixMask6(prefix: number): bigint {
  return prefix === 0 ? 0n : (ALL_ONES << BigInt(128 - prefix)) & ALL_ONES;
}

/** Parses an IPv6 address without prefix or zone; undefined when it is not one. */
export function parseIpv6(text: string): bigint | undefined {
  if (text.includes('/') || text.includes('%') || !Address6.isValid(text)) return undefined;
  return new Address6(text).bigInt();
}

/**
 * Parses `addr/n`. With `strict`, host bits must be zero (a range is a network); otherwise
 * they are cleared.
 */
export function parseCidr6(text: string, strict = false): Cidr6 | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const address = parseIpv6(text.slice(0, slash));
  const prefixText = text.slice(slash + 1);
  if (address === undefined || !/^\d{1,3}$/.test(prefixText)) return undefined;
  const prefix = Number(prefixText);
  if (prefix > 128) return undefined;
  const network = address & prefixMask6(prefix);
  if (strict && network !== address) return undefined;
  return { network, prefix };
}

/** True for `::ffff:a.b.c.d`, an IPv4 address in IPv6 clothing. */
export function isIpv4Mapped(address: bigint): boolean {
  return cidr6Contains(IPV4_MAPPED, address);
}

/** RFC 5952 text: lower case, no leading zeros, the longest run of two or more zero groups as `::`. */
export function formatIpv6(address: bigint): string {
  const groups: number[] = [];
  for (let shift = 112n; shift >= 0n; shift -= 16n)
    groups.push(Number((address >> shift) & 0xffffn));
  let bestStart = -1;
  let bestLength = 1;
  for (let start = 0; start < 8;) {
    if (groups[start] !== 0) {
      start++;
      continue;
    }
    let end = start;
    while (end < 8 && groups[end] === 0) end++;
    if (end - start > bestLength) [bestStart, bestLength] = [start, end - start];
    start = end;
  }
  const hex = (part: readonly number[]) => part.map((group) => group.toString(16)).join(':');
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`;
}

export function formatCidr6(cidr: Cidr6): string {
  return `${formatIpv6(cidr.network)}/${cidr.prefix}`;
}

export function lastOf6(cidr: Cidr6): bigint {
  return cidr.network | (~prefixMask6(cidr.prefix) & ALL_ONES);
}

export function cidr6Contains(cidr: Cidr6, address: bigint): boolean {
  return (address & prefixMask6(cidr.prefix)) === cidr.network;
}

/** Whether two ranges share an address (one then holds the other). */
export function cidr6Overlap(a: Cidr6, b: Cidr6): boolean {
  return a.prefix <= b.prefix ? cidr6Contains(a, b.network) : cidr6Contains(b, a.network);
}
