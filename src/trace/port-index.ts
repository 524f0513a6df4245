/**
 * Which of an archive's bindings hold a (public address, port): a binary search instead of a
 * scan of every block. A /16 archive has 65 533 clients, and a batch of thousands of rows asks
 * the same few archives again and again (a scan cost about 1.2 ms a row). Built once per loaded
 * archive and kept beside it; pure.
 */
import type { Address } from '../net/address.js';
import type { ReadAssignment } from '../render/read-rules.js';

/** Over IPv4 (number) or IPv6 (bigint) bindings alike. */
export interface PortIndex<A extends Address = number> {
  /** The bindings whose block holds `port` (on `address`, or on any address when undefined). */
  holding(port: number, address: A | undefined): ReadAssignment<A>[];
}

interface AddressBlocks<A extends Address> {
  /** Sorted by firstPort. */
  readonly blocks: readonly ReadAssignment<A>[];
  /** The widest block, so a search knows how far back a block may start and still hold. */
  readonly widest: number;
}

function indexOf<A extends Address>(
  assignments: readonly ReadAssignment<A>[],
): Map<A, AddressBlocks<A>> {
  const grouped = new Map<A, ReadAssignment<A>[]>();
  for (const assignment of assignments) {
    const list = grouped.get(assignment.publicAddress);
    if (list) list.push(assignment);
    else grouped.set(assignment.publicAddress, [assignment]);
  }
  const index = new Map<A, AddressBlocks<A>>();
  for (const [address, blocks] of grouped) {
    blocks.sort((a, b) => a.firstPort - b.firstPort);
    const widest = blocks.reduce(
      (most, block) => Math.max(most, block.lastPort - block.firstPort),
      0,
    );
    index.set(address, { blocks, widest });
  }
  return index;
}

/** Blocks of one address holding `port`, in the archive's order of clients. */
function holdingIn<A extends Address>(
  { blocks, widest }: AddressBlocks<A>,
  port: number,
): ReadAssignment<A>[] {
  // The last block that starts at or before the port.
  let low = 0;
  let high = blocks.length - 1;
  let last = -1;
  while (low <= high) {
    const middle = (low + high) >> 1;
    if ((blocks[middle]?.firstPort ?? Infinity) <= port) {
      last = middle;
      low = middle + 1;
    } else {
      high = middle - 1;
    }
  }
  const found: ReadAssignment<A>[] = [];
  for (let at = last; at >= 0; at--) {
    const block = blocks[at];
    if (!block || block.firstPort < port - widest) break;
    if (block.lastPort >= port) found.push(block);
  }
  return found.reverse();
}

export function buildPortIndex<A extends Address>(
  assignments: readonly ReadAssignment<A>[],
): PortIndex<A> {
  const index = indexOf(assignments);
  const order = new Map(assignments.map((assignment, position) => [assignment, position]));
  return {
    holding(port, address) {
      const lists =
        address === undefined
          ? [...index.values()]
          : [index.get(address)].filter((blocks) => blocks !== undefined);
      const found = lists.flatMap((blocks) => holdingIn(blocks, port));
      // The same order a scan of the archive gives, so answers do not depend on the index.
      return found.sort((a, b) => (order.get(a) ?? 0) - (order.get(b) ?? 0));
    },
  };
}
