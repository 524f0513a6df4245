/**
 * IPv4 addresses as unsigned 32-bit numbers. Parsing and validation go through ip-address;
 * formatting is done here because it runs once per client (a million times for a /12) and a
 * library object per address would dominate generation time.
 */
import { Address4 } from 'ip-address';

export interface Cidr4 {
  /** The network address (host bits zero). */
  readonly network: number;
  readonly prefix: number;
}

export function formatIpv4(address: number): string {
  return `${address >>> 24}.${(address >>> 16) & 255}.${(address >>> 8) & 255}.${address & 255}`;
}

/** Parses a dotted quad; undefined when it is not one. */
export function parseIpv4(text: string): number | undefined {
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(text) || !Address4.isValid(text)) return undefined;
  const parts = text.split('.').map(Number);
  if (parts.some((part) => part > 255)) return undefined;
  const [a = 0, b = 0, c = 0, d = 0] = parts;
  return ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
}

export function prefixMask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/**
 * Parses `a.b.c.d/n`. With `strict`, host bits must be zero (a range in an eduVPN file is a
 * network); otherwise they are cleared.
 */
export function parseCidr4(text: string, strict = false): Cidr4 | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const address = parseIpv4(text.slice(0, slash));
  const prefixText = text.slice(slash + 1);
  if (address === undefined || !/^\d{1,2}$/.test(prefixText)) return undefined;
  const prefix = Number(prefixText);
  if (prefix > 32) return undefined;
  const network = (address & prefixMask(prefix)) >>> 0;
  if (strict && network !== address) return undefined;
  return { network, prefix };
}

export function formatCidr4(cidr: Cidr4): string {
  return `${formatIpv4(cidr.network)}/${cidr.prefix}`;
}

export function broadcastOf(cidr: Cidr4): number {
  return (cidr.network | ~prefixMask(cidr.prefix)) >>> 0;
}

export function cidrContains(cidr: Cidr4, address: number): boolean {
  return (address & prefixMask(cidr.prefix)) >>> 0 === cidr.network;
}

/** Converts a dotted netmask (`255.255.255.128`) to a prefix length; undefined if not contiguous. */
export function netmaskToPrefix(mask: string): number | undefined {
  const value = parseIpv4(mask);
  if (value === undefined) return undefined;
  let bits = 0;
  while (bits < 32 && ((value >>> (31 - bits)) & 1) === 1) bits++;
  return prefixMask(bits) === value ? bits : undefined;
}

/** The private ranges eduVPN hands out to clients (RFC 1918 and the shared 100.64/10). */
export const PRIVATE_RANGES: readonly Cidr4[] = [
  { network: 0x0a000000, prefix: 8 },
  { network: 0xac100000, prefix: 12 },
  { network: 0xc0a80000, prefix: 16 },
  { network: 0x64400000, prefix: 10 },
];

export function isPrivateRange(cidr: Cidr4): boolean {
  return PRIVATE_RANGES.some(
    (range) => range.prefix <= cidr.prefix && cidrContains(range, cidr.network),
  );
}
