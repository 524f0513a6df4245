/**
 * The client addresses of all pools, numbered in pool order then address order (the hand-out
 * order). Pools must not overlap, so each pool is one run of consecutive numbers and an address
 * or a number is found by a binary search over the pools: no per-client object or array.
 */
import type { ClientPool } from '../eduvpn/pool.js';
import { clientCount } from '../eduvpn/pool.js';
import { formatWhere, TnatError } from '../errors.js';
import { cidrContains, formatCidr4, formatIpv4 } from '../net/ipv4.js';

/** One non-empty pool and the number of its first client in hand-out order. */
export interface PoolSpan {
  readonly pool: ClientPool;
  readonly start: number;
}

function describePool(pool: ClientPool): string {
  const where = formatWhere({ file: pool.origin.file, line: pool.origin.line });
  return `profile "${pool.profileId}" (${formatCidr4(pool.subnet4)}, ${where})`;
}

/**
 * Where the clients come from, largest pools first, for a message about all of them: the
 * eduVPN files and lines an operator would shrink a range in.
 */
export function describeClientSources(spans: readonly PoolSpan[], shown = 3): string {
  const largest = [...spans].sort((a, b) => clientCount(b.pool) - clientCount(a.pool));
  const listed = largest
    .slice(0, shown)
    .map(({ pool }) => `${describePool(pool)} with ${clientCount(pool)}`);
  const rest = largest.length - listed.length;
  return listed.join(', ') + (rest > 0 ? ` and ${rest} more pool${rest === 1 ? '' : 's'}` : '');
}

function rejectOverlap(byAddress: readonly PoolSpan[]): void {
  let widest: PoolSpan | undefined;
  for (const span of byAddress) {
    if (widest && span.pool.first <= widest.pool.last) {
      const [earlier, later] =
        widest.start < span.start ? [widest.pool, span.pool] : [span.pool, widest.pool];
      const from = formatIpv4(span.pool.first);
      const to = formatIpv4(Math.min(span.pool.last, widest.pool.last));
      throw new TnatError(
        'E_MAPPING',
        `client addresses ${from}-${to} belong to both ${describePool(earlier)} and ${describePool(later)}: give each profile its own range`,
      );
    }
    if (!widest || span.pool.last > widest.pool.last) widest = span;
  }
}

/** Refuses a public address inside a client subnet: it would be translated to itself. */
export function rejectPublicAddressInPools(
  pools: readonly ClientPool[],
  publicAddresses: readonly number[],
): void {
  for (const address of publicAddresses) {
    const pool = pools.find((candidate) => cidrContains(candidate.subnet4, address));
    if (pool) {
      throw new TnatError(
        'E_MAPPING',
        `public address ${formatIpv4(address)} in nat.publicAddresses lies inside the client subnet of ${describePool(pool)}: use the server's public address there`,
      );
    }
  }
}

function findSpan<Key>(
  spans: readonly PoolSpan[],
  key: Key,
  lowOf: (span: PoolSpan) => Key,
): PoolSpan | undefined {
  let low = 0;
  let high = spans.length - 1;
  let found: PoolSpan | undefined;
  while (low <= high) {
    const middle = (low + high) >>> 1;
    const span = spans[middle];
    if (span && lowOf(span) <= key) {
      found = span;
      low = middle + 1;
    } else {
      high = middle - 1;
    }
  }
  return found;
}

export class ClientIndex {
  readonly count: number;
  /** Non-empty pools in hand-out order. */
  readonly inHandOutOrder: readonly PoolSpan[];
  /** The same pools by ascending first address. */
  readonly byAddress: readonly PoolSpan[];

  constructor(pools: readonly ClientPool[]) {
    const spans: PoolSpan[] = [];
    let count = 0;
    for (const pool of pools) {
      const size = clientCount(pool);
      if (size === 0) continue;
      spans.push({ pool, start: count });
      count += size;
    }
    this.count = count;
    this.inHandOutOrder = spans;
    this.byAddress = [...spans].sort((a, b) => a.pool.first - b.pool.first);
    rejectOverlap(this.byAddress);
  }

  /** The pool that holds `address`, or undefined. */
  spanOfAddress(address: number): PoolSpan | undefined {
    const span = findSpan(this.byAddress, address, (candidate) => candidate.pool.first);
    return span && address <= span.pool.last ? span : undefined;
  }

  /** The pool that holds client number `index` (hand-out order). */
  spanOfIndex(index: number): PoolSpan | undefined {
    if (index < 0 || index >= this.count) return undefined;
    return findSpan(this.inHandOutOrder, index, (candidate) => candidate.start);
  }
}
