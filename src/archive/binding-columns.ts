/**
 * An archive's bindings as columns of integers, as its binding index stores them: a trace
 * looks up one port among a /16's 65 533 bindings without making 65 533 objects. `order` lists
 * the bindings by (public address, first port), so a binary search finds the blocks that hold
 * a port; answers come in the archive's order of bindings, as src/trace/port-index.ts gives
 * them from a parsed list. Pure.
 */
import { bindingsOf, type Bindings } from '../mapping/bindings.js';
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

/** Every binding of an archive in the index's columns, before their search order. */
export type BindingRows = Omit<BindingColumns, 'order'>;

/** Positions up to this many fit beside a 32-bit (address, port) key in a double's 53 bits. */
const POSITION_SPAN = 2 ** 21;

/** The positions of `columns` in search order (see BindingColumns.order). */
export function searchOrder(address: Uint16Array, firstPort: Uint16Array): Uint32Array {
  const count = address.length;
  if (count >= POSITION_SPAN) {
    const order = Uint32Array.from(address.keys());
    return order.sort(
      (a, b) =>
        (address[a] ?? 0) - (address[b] ?? 0) || (firstPort[a] ?? 0) - (firstPort[b] ?? 0) || a - b,
    );
  }
  // One key per binding, (address, first port, position) in a double below 2^53: a numeric
  // sort of doubles takes a /16 in 4 ms, a comparator over positions in 12 ms.
  const keys = new Float64Array(count);
  for (let at = 0; at < count; at++)
    keys[at] = ((address[at] ?? 0) * 0x10000 + (firstPort[at] ?? 0)) * POSITION_SPAN + at;
  keys.sort();
  const order = new Uint32Array(count);
  for (let at = 0; at < count; at++) order[at] = (keys[at] ?? 0) % POSITION_SPAN;
  return order;
}

const fitsU16 = (value: number) => Number.isInteger(value) && value >= 0 && value <= 0xffff;

/**
 * Bindings as the index's rows; undefined when a port does not fit its 16 bits. `addresses`
 * lists the public addresses in the order the bindings first name them.
 */
export function rowsOfList(list: readonly ReadAssignment[]): BindingRows | undefined {
  if (!list.every((binding) => fitsU16(binding.firstPort) && fitsU16(binding.lastPort)))
    return undefined;
  const addresses: number[] = [];
  const numberOf = new Map<number, number>();
  const rows: BindingRows = {
    addresses,
    client: new Uint32Array(list.length),
    address: new Uint16Array(list.length),
    firstPort: new Uint16Array(list.length),
    lastPort: new Uint16Array(list.length),
    proto: new Uint8Array(list.length),
  };
  list.forEach((binding, at) => {
    let number = numberOf.get(binding.publicAddress);
    if (number === undefined) {
      number = addresses.push(binding.publicAddress) - 1;
      numberOf.set(binding.publicAddress, number);
    }
    rows.client[at] = binding.client;
    rows.address[at] = number;
    rows.firstPort[at] = binding.firstPort;
    rows.lastPort[at] = binding.lastPort;
    rows.proto[at] = PROTOCOLS.indexOf(binding.proto);
  });
  return rows;
}

/**
 * A plan's bindings (one per client, for tcp and udp alike) as the index's rows, the same as
 * rowsOfList gives for the bindings readAssignments reads from the plan's rules.
 */
export function rowsOfBindings(bindings: Bindings): BindingRows | undefined {
  const { count } = bindings;
  for (let row = 0; row < count; row++) {
    if (!fitsU16(bindings.firstPort[row] ?? -1) || !fitsU16(bindings.lastPort[row] ?? -1))
      return undefined;
  }
  // Renumbered in the order of first use, as rowsOfList numbers them.
  const renumber = new Int32Array(bindings.publicAddresses.length).fill(-1);
  const addresses: number[] = [];
  const address = new Uint16Array(count);
  for (let row = 0; row < count; row++) {
    const index = bindings.publicIndex[row] ?? 0;
    if (renumber[index] === -1) {
      renumber[index] = addresses.push(bindings.publicAddresses[index] ?? 0) - 1;
    }
    address[row] = renumber[index] ?? 0;
  }
  return {
    addresses,
    client: bindings.client.slice(0, count),
    address,
    firstPort: Uint16Array.from(bindings.firstPort.subarray(0, count)),
    lastPort: Uint16Array.from(bindings.lastPort.subarray(0, count)),
    proto: new Uint8Array(count).fill(PROTOCOLS.indexOf('both')),
  };
}

export function bindingAt(columns: BindingRows, at: number): ReadAssignment {
  return {
    client: columns.client[at] ?? 0,
    publicAddress: columns.addresses[columns.address[at] ?? 0] ?? 0,
    firstPort: columns.firstPort[at] ?? 0,
    lastPort: columns.lastPort[at] ?? 0,
    proto: PROTOCOLS[columns.proto[at] ?? 0] ?? 'both',
  };
}

/**
 * The first binding of each client, ascending (as the apply compares them): the index lists
 * them as readAssignments does, ascending by client, so this is a copy of the rows that start
 * a client; an index in another order goes through bindingsOf.
 */
export function clientBindings(columns: BindingRows): Bindings {
  const { client, address, firstPort, lastPort } = columns;
  const rows = client.length;
  let count = 0;
  for (let at = 0; at < rows; at++) {
    if (at > 0 && (client[at] ?? 0) < (client[at - 1] ?? 0))
      return bindingsOf(Array.from({ length: rows }, (_, row) => bindingAt(columns, row)));
    if (at === 0 || client[at] !== client[at - 1]) count++;
  }
  const bindings = {
    count,
    client: new Uint32Array(count),
    publicIndex: new Uint32Array(count),
    publicAddresses: columns.addresses,
    firstPort: new Int32Array(count),
    lastPort: new Int32Array(count),
  };
  let row = 0;
  for (let at = 0; at < rows; at++) {
    if (at > 0 && client[at] === client[at - 1]) continue;
    bindings.client[row] = client[at] ?? 0;
    bindings.publicIndex[row] = address[at] ?? 0;
    bindings.firstPort[row] = firstPort[at] ?? 0;
    bindings.lastPort[row] = lastPort[at] ?? 0;
    row++;
  }
  return bindings;
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
