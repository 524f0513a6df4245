/**
 * Client ranges as eduVPN writes them: checked, split into one subnet per OpenVPN process the
 * way the portal's `Ip::split` does it, and turned into pools (network+2 … broadcast-1, because
 * network+1 is the server's own address on the tun/wg interface).
 */
import { Address6 } from 'ip-address';
import { TnatError, type Where } from '../errors.js';
import { broadcastOf, formatCidr4, isPrivateRange, parseCidr4, type Cidr4 } from '../net/ipv4.js';
import type { ClientPool, PoolOrigin, VpnProtocol } from './pool.js';

/** eduVPN accepts 1, 2, 4, … 64 OpenVPN processes per profile. */
export const MAX_PROCESSES = 64;

/** The portal refuses to split a range into subnets of fewer than 4 addresses (`Ip::split`). */
const MIN_SUBNET_BITS = 2;

/** Every OpenVPN process gets a /112 of the profile's IPv6 range, whatever its IPv4 share. */
const PROCESS_PREFIX6 = 112;

export function sourceError(sentence: string, where: Where): TnatError {
  return new TnatError('E_SOURCE', sentence, { where });
}

export function isValidProcessCount(count: number): boolean {
  return (
    Number.isInteger(count) && count >= 1 && count <= MAX_PROCESSES && (count & (count - 1)) === 0
  );
}

/**
 * A client IPv4 range: `what` names it in messages ("oRangeFour of profile 'office'").
 * Host bits must be zero and the range private: traceable-nat only translates private clients.
 */
export function parseClientRange4(text: string, what: string, where: Where): Cidr4 {
  const range = parseCidr4(text);
  if (!range) {
    throw sourceError(
      `${what} '${text}' is not an IPv4 range: write it as network/prefix, like 10.0.0.0/24`,
      where,
    );
  }
  if (!parseCidr4(text, true)) {
    throw sourceError(
      `${what} '${text}' has host bits set: write the network form ${formatCidr4(range)}`,
      where,
    );
  }
  if (!isPrivateRange(range)) {
    throw sourceError(
      `${what} ${formatCidr4(range)} is not a private range, and traceable-nat only translates ` +
        'private client ranges (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10): ' +
        'give the profile a private range',
      where,
    );
  }
  return range;
}

/** Splits a range into `count` (a power of two) equal subnets, in address order. */
export function splitRange4(range: Cidr4, count: number, what: string, where: Where): Cidr4[] {
  const bits = Math.log2(count);
  const prefix = range.prefix + bits;
  if (prefix > 32 - MIN_SUBNET_BITS) {
    const processes = count === 1 ? '1 OpenVPN process' : `${count} OpenVPN processes`;
    throw sourceError(
      `${what} ${formatCidr4(range)} is too small for ${processes}: each needs a subnet of at ` +
        `least 4 addresses, so use a /${32 - MIN_SUBNET_BITS - bits} or larger, or fewer ports`,
      where,
    );
  }
  const size = 2 ** (32 - prefix);
  return Array.from({ length: count }, (_, n) => ({ network: range.network + n * size, prefix }));
}

/** A range that is not split (WireGuard, one OpenVPN process) must still hold a client. */
export function checkClientRangeSize(range: Cidr4, what: string, where: Where): Cidr4 {
  if (range.prefix > 32 - MIN_SUBNET_BITS) {
    throw sourceError(
      `${what} ${formatCidr4(range)} is too small: a client range needs at least 4 addresses, ` +
        `so use a /${32 - MIN_SUBNET_BITS} or larger`,
      where,
    );
  }
  return range;
}

/**
 * An IPv6 range in CIDR form, normalised to its network. Host bits are tolerated: the portal
 * masks them itself, and the IPv6 side is only carried along for now.
 */
export function parseRange6(text: string, what: string, where: Where): Address6 {
  if (!text.includes('/') || !Address6.isValid(text)) {
    throw sourceError(
      `${what} '${text}' is not an IPv6 range: write it as network/prefix, like fd42::/64`,
      where,
    );
  }
  return new Address6(text);
}

/** The /112 of each OpenVPN process, consecutive from the start of the range. */
export function splitRange6(range: Address6, count: number, what: string, where: Where): string[] {
  const widest = PROCESS_PREFIX6 - Math.log2(count);
  if (range.subnetMask > widest) {
    throw sourceError(
      `${what} ${formatRange6(range)} is too small for ${count} OpenVPN processes of a ` +
        `/${PROCESS_PREFIX6} each: use a /${widest} or larger`,
      where,
    );
  }
  const start = range.startAddress().bigInt();
  const size = 1n << BigInt(128 - PROCESS_PREFIX6);
  return Array.from(
    { length: count },
    (_, n) => `${Address6.fromBigInt(start + BigInt(n) * size).correctForm()}/${PROCESS_PREFIX6}`,
  );
}

export function formatRange6(range: Address6): string {
  return `${range.startAddress().correctForm()}/${range.subnetMask}`;
}

export function makePool(
  profileId: string,
  protocol: VpnProtocol,
  subnet4: Cidr4,
  origin: PoolOrigin,
  subnet6?: string,
): ClientPool {
  return {
    profileId,
    protocol,
    origin,
    subnet4,
    first: subnet4.network + 2,
    last: broadcastOf(subnet4) - 1,
    subnet6,
  };
}
