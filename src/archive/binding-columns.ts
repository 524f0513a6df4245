/**
 * An archive's bindings as columns of integers, as its binding index stores them: a trace
 * looks up one port among a /16's 65 533 bindings without making 65 533 objects. `order` lists
 * the bindings by (public address, first port), so a binary search finds the blocks that hold
 * a port; answers come in the archive's order of bindings, as src/trace/port-index.ts gives
 * them from a parsed list. Pure.
 */
import type { ProtocolSet, ReadAssignment } from '../render/read-rules.js';

export const PROTOCOLS: readonly ProtocolSet[] = ['tcp', 'udp', 'both'];

export interface BindingColumns {
  /** The public addresses the `address` column numbers. */
  readonly addresses: readonly number[];
  readonly client: Uint32Array;
  readonly address: Uint16Array;
  readonly firstPort: Uint16Array;
  readonly lastPort: Uint16Array;
  /** Index into PROTOCOLS. */
  readonly proto: Uint8Array;
  /** Binding positions sorted by address number, then first port, then position. */
  readonly order: Uint32Array;
}

/** The positions of `columns` in search order (see BindingColumns.order). */
export function searchOrder(address: Uint16Array, firstPort: Uint16Array): Uint32Array {
  const order = Uint32Array.from(address.keys());
  return order.sort(
    (a, b) =>
      (address[a] ?? 0) - (address[b] ?? 0) || (firstPort[a] ?? 0) - (firstPort[b] ?? 0) || a - b,
  );
}

export function bindingAt(columns: BindingColumns, at: number): ReadAssignment {
  return {
    client: columns.client[at] ?? 0,
    publicAddress: columns.addresses[columns.address[at] ?? 0] ?? 0,
    firstPort: columns.firstPort[at] ?? 0,
    lastPort: columns.lastPort[at] ?? 0,
    proto: PROTOCOLS[columns.proto[at] ?? 0] ?? 'both',
  };
}

/** Per address number: where its bindings start and end in `order`, and its widest block. */
interface AddressSpan {
  readonly from: number;
  readonly to: number;
  readonly widest: number;
}

function spansOf(columns: BindingColumns): AddressSpan[] {
  const { order, address, firstPort, lastPort } = columns;
  const spans: AddressSpan[] = [];
  let from = 0;
  while (from < order.length) {
    const number = address[order[from] ?? 0] ?? 0;
    let to = from;
    let widest = 0;
    while (to < order.length && address[order[to] ?? 0] === number) {
      const at = order[to] ?? 0;
      widest = Math.max(widest, (lastPort[at] ?? 0) - (firstPort[at] ?? 0));
      to++;
    }
    spans[number] = { from, to, widest };
    from = to;
  }
  return spans;
}

/** The positions of one address's blocks holding `port`. */
function holdingIn(columns: BindingColumns, span: AddressSpan, port: number): number[] {
  const { order, firstPort, lastPort } = columns;
  // The last block that starts at or before the port.
  let low = span.from;
  let high = span.to - 1;
  let last = span.from - 1;
  while (low <= high) {
    const middle = (low + high) >> 1;
    if ((firstPort[order[middle] ?? 0] ?? Infinity) <= port) {
      last = middle;
      low = middle + 1;
    } else {
      high = middle - 1;
    }
  }
  const found: number[] = [];
  for (let at = last; at >= span.from; at--) {
    const position = order[at] ?? 0;
    if ((firstPort[position] ?? 0) < port - span.widest) break;
    if ((lastPort[position] ?? 0) >= port) found.push(position);
  }
  return found;
}

/** The bindings whose block holds `port` (on `address`, or any), in the archive's order. */
export function columnsHolding(
  columns: BindingColumns,
): (port: number, address: number | undefined) => ReadAssignment[] {
  let spans: AddressSpan[] | undefined;
  return (port, address) => {
    spans ??= spansOf(columns);
    const wanted = address === undefined ? -1 : columns.addresses.indexOf(address);
    if (address !== undefined && wanted < 0) return [];
    const chosen = wanted < 0 ? spans : [spans[wanted]];
    const positions = chosen.flatMap((span) => (span ? holdingIn(columns, span, port) : []));
    return positions.sort((a, b) => a - b).map((at) => bindingAt(columns, at));
  };
}
