/**
 * Client bindings (client, public address, port block) as the apply compares them: one per
 * client, ascending by client, in columns of typed arrays. The planned ones are a PortMap's
 * columns; the held ones come from an archive's binding index, a parsed ruleset or the kernel's
 * listing. Comparing a /16's held and planned bindings is one merge walk over integers, where
 * 65 533 objects a side cost more in garbage collection than the comparison (issue 13). Pure.
 */
import type { AssignmentColumns, Binding } from './types.js';

/** One per client, ascending by client (the first binding a ruleset lists of each client). */
export type Bindings = AssignmentColumns;

export const NO_BINDINGS: Bindings = {
  count: 0,
  client: new Uint32Array(0),
  publicIndex: new Uint32Array(0),
  publicAddresses: [],
  firstPort: new Int32Array(0),
  lastPort: new Int32Array(0),
};

/**
 * The first binding of each client, ascending by client: a client's tcp and udp rules may be
 * two bindings, and the first one is what the kernel applies. A list that is not ascending is
 * sorted stably first, so the first of a client stays first.
 */
export function bindingsOf(list: readonly Binding[]): Bindings {
  let ascending = true;
  for (let i = 1; i < list.length && ascending; i++)
    ascending = (list[i]?.client ?? 0) >= (list[i - 1]?.client ?? 0);
  const ordered = ascending ? list : [...list].sort((a, b) => a.client - b.client);
  const client = new Uint32Array(ordered.length);
  const publicIndex = new Uint32Array(ordered.length);
  const firstPort = new Int32Array(ordered.length);
  const lastPort = new Int32Array(ordered.length);
  const publicAddresses: number[] = [];
  const numberOf = new Map<number, number>();
  let count = 0;
  for (const binding of ordered) {
    if (count > 0 && client[count - 1] === binding.client) continue;
    let number = numberOf.get(binding.publicAddress);
    if (number === undefined) {
      number = publicAddresses.push(binding.publicAddress) - 1;
      numberOf.set(binding.publicAddress, number);
    }
    client[count] = binding.client;
    publicIndex[count] = number;
    firstPort[count] = binding.firstPort;
    lastPort[count] = binding.lastPort;
    count++;
  }
  return {
    count,
    client: client.subarray(0, count),
    publicIndex: publicIndex.subarray(0, count),
    publicAddresses,
    firstPort: firstPort.subarray(0, count),
    lastPort: lastPort.subarray(0, count),
  };
}

export function publicAddressAt(bindings: Bindings, row: number): number {
  return bindings.publicAddresses[bindings.publicIndex[row] ?? 0] ?? 0;
}

/** Row `row` as an object, for the few callers that want one. */
export function bindingAtRow(bindings: Bindings, row: number): Binding {
  return {
    client: bindings.client[row] ?? 0,
    publicAddress: publicAddressAt(bindings, row),
    firstPort: bindings.firstPort[row] ?? 0,
    lastPort: bindings.lastPort[row] ?? 0,
  };
}

/** What a merge walk of held against planned bindings reports, row by row. */
export interface BindingVisitor {
  /** A held client the plan no longer has. */
  gone?(heldRow: number): void;
  /** A planned client the kernel does not hold. */
  added?(plannedRow: number): void;
  /** A client in both: `same` when its public address and block are unchanged. */
  both?(heldRow: number, plannedRow: number, same: boolean): void;
}

/** Walks both in one pass, ascending by client. */
export function walkBindings(held: Bindings, planned: Bindings, visitor: BindingVisitor): void {
  let i = 0;
  let j = 0;
  while (i < held.count || j < planned.count) {
    const a = i < held.count ? (held.client[i] ?? 0) : Infinity;
    const b = j < planned.count ? (planned.client[j] ?? 0) : Infinity;
    // Not `visitor.gone?.(i++)`: an absent visitor would skip the increment with the call.
    if (a < b) {
      visitor.gone?.(i);
      i++;
    } else if (b < a) {
      visitor.added?.(j);
      j++;
    } else {
      visitor.both?.(
        i,
        j,
        held.firstPort[i] === planned.firstPort[j] &&
          held.lastPort[i] === planned.lastPort[j] &&
          publicAddressAt(held, i) === publicAddressAt(planned, j),
      );
      i++;
      j++;
    }
  }
}

/** Whether both bind the same clients to the same public addresses and blocks. */
export function sameBindings(held: Bindings, planned: Bindings): boolean {
  if (held.count !== planned.count) return false;
  for (let row = 0; row < held.count; row++) {
    if (
      held.client[row] !== planned.client[row] ||
      held.firstPort[row] !== planned.firstPort[row] ||
      held.lastPort[row] !== planned.lastPort[row] ||
      publicAddressAt(held, row) !== publicAddressAt(planned, row)
    )
      return false;
  }
  return true;
}

/** The block size most of `count` blocks have (the larger one on a tie); 0 for none. */
export function mostCommonBlockSize(
  firstPort: ArrayLike<number>,
  lastPort: ArrayLike<number>,
  count: number,
): number {
  const counts = new Map<number, number>();
  let best = 0;
  let bestCount = 0;
  for (let row = 0; row < count; row++) {
    const size = (lastPort[row] ?? 0) - (firstPort[row] ?? 0) + 1;
    const seen = (counts.get(size) ?? 0) + 1;
    counts.set(size, seen);
    if (seen > bestCount || (seen === bestCount && size > best)) {
      best = size;
      bestCount = seen;
    }
  }
  return best;
}
