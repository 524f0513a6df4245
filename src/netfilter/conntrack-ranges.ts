/**
 * Which conntrack entries to delete after a switch: those of exactly the clients whose
 * (address, block) changed or disappeared. Deleting one client at a time would start one
 * conntrack process per client (65 000 for a /16 whose block size changed), so runs of changed
 * clients with no unchanged client between them are covered by as few prefixes as possible.
 * Addresses that are no client at all (network, server, broadcast) may fall inside such a
 * prefix; nothing of ours is bound to them.
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
 * `changed` and `kept` are client addresses (any order). Returns prefixes that cover every
 * changed client and no kept client.
 */
export function conntrackPrefixes(changed: Iterable<number>, kept: Iterable<number>): Cidr4[] {
  const changedSorted = Uint32Array.from(changed).sort();
  const keptSorted = Uint32Array.from(kept).sort();
  const prefixes: Cidr4[] = [];
  let keptIndex = 0;
  let index = 0;
  while (index < changedSorted.length) {
    const low = changedSorted[index] ?? 0;
    while (keptIndex < keptSorted.length && (keptSorted[keptIndex] ?? 0) < low) keptIndex++;
    const nextKept = keptIndex < keptSorted.length ? (keptSorted[keptIndex] ?? 0) : Infinity;
    let high = low;
    while (index < changedSorted.length && (changedSorted[index] ?? 0) < nextKept) {
      high = changedSorted[index] ?? high;
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
