/**
 * Deleting the conntrack entries of IPv6 clients whose translation changed or went away, the
 * IPv6 counterpart of conntrack.ts with the same two fences: `--src-nat`, and prefixes that
 * cover only changed clients. IPv6 runs are joined only across consecutive addresses (no
 * stepping over a gap as the IPv4 runs do), so a prefix never reaches another host.
 */
import { formatIpv6, parseCidr6, parseIpv6, prefixMask6, type Cidr6 } from '../net/ipv6.js';
import { deleteEach, type ConntrackResult } from './conntrack.js';
import type { CommandRunner } from './runner.js';

/** Minimal aligned prefixes covering [low, high] (inclusive). */
export function rangeToPrefixes6(low: bigint, high: bigint): Cidr6[] {
  const result: Cidr6[] = [];
  let start = low;
  while (start <= high) {
    let bits = 0;
    while (bits < 128 && ((start >> BigInt(bits)) & 1n) === 0n) bits++;
    while (start + (1n << BigInt(bits)) - 1n > high) bits--;
    result.push({ network: start, prefix: 128 - bits });
    start += 1n << BigInt(bits);
  }
  return result;
}

/**
 * The prefixes to clear for these sources: client addresses (`fd43::4d`) joined into runs of
 * consecutive addresses, and client ranges (`fd42::/112`, prefix mode) as they are.
 */
export function conntrackPrefixes6(sources: Iterable<string>): Cidr6[] {
  const ranges: Cidr6[] = [];
  const addresses: bigint[] = [];
  for (const source of sources) {
    if (source.includes('/')) {
      const range = parseCidr6(source);
      if (range) ranges.push(range);
    } else {
      const address = parseIpv6(source);
      if (address !== undefined) addresses.push(address);
    }
  }
  addresses.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const prefixes: Cidr6[] = [];
  let index = 0;
  while (index < addresses.length) {
    const low = addresses[index] ?? 0n;
    let high = low;
    while (addresses[index + 1] === high + 1n) high = addresses[++index] ?? high;
    prefixes.push(...rangeToPrefixes6(low, high));
    index++;
  }
  return [...ranges, ...prefixes];
}

export async function forgetSources6(
  runner: CommandRunner,
  sources: Iterable<string>,
): Promise<ConntrackResult> {
  const prefixes = conntrackPrefixes6(sources);
  const filters = prefixes.map((prefix) => [
    '-f',
    'ipv6',
    '-s',
    formatIpv6(prefix.network),
    '--mask-src',
    formatIpv6(prefixMask6(prefix.prefix)),
  ]);
  return { prefixes: prefixes.length, deleted: await deleteEach(runner, filters) };
}
