/**
 * An address of either family as trace and lookup carry it: a number is IPv4 (uint32), a bigint
 * IPv6 (uint128), so the type of the value itself says which, and one code path serves both.
 */
import { formatIpv4 } from './ipv4.js';
import { formatIpv6 } from './ipv6.js';

export type Address = number | bigint;

export function formatAddress(address: Address): string {
  return typeof address === 'bigint' ? formatIpv6(address) : formatIpv4(address);
}
