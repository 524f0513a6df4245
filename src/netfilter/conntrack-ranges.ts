/**
 * Which conntrack entries to delete after a switch: those of exactly the clients whose
 * (address, block) changed or disappeared (issue 11, item 2: a run from one pool to another
 * once deleted the entries of every host between them, admins' SSH sessions included).
 *
 * Deleting one client at a time would start one conntrack process per client (65 000 for a /16
 * whose block size changed), so consecutive changed clients are covered by as few aligned
 * prefixes as possible. A run may step over exactly one gap that is no client: the broadcast,
 * network and server address (N-1, N, N+1 with N a multiple of 4) between the last client of
 * one eduVPN subnet and the first client of the next. Because every eduVPN subnet is aligned
 * and at least a /30, such a gap lies inside the subnets of the two changed clients around it,
 * whatever the pools were; any other gap ends the run. So a prefix never reaches an address
 * outside the changed clients' own subnets, and never a kept client.
 */
import { prefixMask, type Cidr4 } from '../net/ipv4.js';

/** Minimal prefixes covering [low, high] (inclusive, uint32). */
export function rangeToPrefixes(low: number, high: number): Cidr4[] {
  const result: Cidr4[] = [];
  let start = low;
  while (start <= high) {
    // The largest aligned block starting at `start` that does not pass `high`.
    let size = start === 0 ? 2 ** 32 : 2 ** Math.min(32, countTrailingZeros(start));
    while (start + size - 1 > high) size /= 2;
    const prefix = 32 - Math.log2(size);
    result.push({ network: start >>> 0, prefix });
    start += size;
  }
  return result;
}

function countTrailingZeros(value: number): number {
  let bits = 0;
  while (bits < 32 && ((value >>> bits) & 1) === 0) bits++;
  return bits;
}

/**
 * Whether the run ending at `high` may go on to the changed client `next`: it is the next
 * address, or the one after a broadcast, network and server address (a subnet boundary).
 */
function continuesRun(high: number, next: number): boolean {
  return next === high + 1 || (next === high + 4 && (high + 2) % 4 === 0);
}

function sortedUnique(addresses: Iterable<number>): Uint32Array {
  const sorted = Uint32Array.from(addresses).sort();
  let length = 0;
  for (let i = 0; i < sorted.length; i++) {
    if (i === 0 || sorted[i] !== sorted[i - 1]) sorted[length++] = sorted[i] ?? 0;
  }
  return sorted.subarray(0, length);
}

/**
 * `changed` and `kept` are client addresses (any order). Returns prefixes that cover every
 * changed client, no kept client, and no address outside the changed clients' subnets.
 */
export function conntrackPrefixes(changed: Iterable<number>, kept: Iterable<number>): Cidr4[] {
  const changedSorted = sortedUnique(changed);
  const keptSorted = sortedUnique(kept);
  const prefixes: Cidr4[] = [];
  let keptIndex = 0;
  let index = 0;
  while (index < changedSorted.length) {
    const low = changedSorted[index] ?? 0;
    while (keptIndex < keptSorted.length && (keptSorted[keptIndex] ?? 0) < low) keptIndex++;
    const nextKept = keptIndex < keptSorted.length ? (keptSorted[keptIndex] ?? 0) : Infinity;
    let high = low;
    index++;
    while (index < changedSorted.length) {
      const next = changedSorted[index] ?? 0;
      if (next >= nextKept || !continuesRun(high, next)) break;
      high = next;
      index++;
    }
    prefixes.push(...rangeToPrefixes(low, high));
  }
  return prefixes;
}

export function maskOf(prefix: Cidr4): string {
  const mask = prefixMask(prefix.prefix);
  return `${mask >>> 24}.${(mask >>> 16) & 255}.${(mask >>> 8) & 255}.${mask & 255}`;
}
