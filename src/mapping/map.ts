/**
 * Clients onto (public address, port block) slots, deterministically (RFC 7422): slot
 * `a * blocksPerAddress + b` is block b of public address a, and clients fill the slots in
 * hand-out order. With the previous mapping at the same block size every client stays where it
 * was, so adding, removing or reordering a pool moves nobody else. Per-client state is one
 * Int32Array; Assignment objects are only built when asked for.
 */
import type { ClientPool } from '../eduvpn/pool.js';
import { TnatError } from '../errors.js';
import { formatIpv4 } from '../net/ipv4.js';
import { bindingsOf } from './bindings.js';
import { chooseBlockLayout } from './block-size.js';
import type { BlockLayout } from './blocks.js';
import { ClientIndex, describeClientSources, rejectPublicAddressInPools } from './clients.js';
import type {
  Assignment,
  AssignmentColumns,
  NatSettings,
  PortBlock,
  PortMap,
  PreviousAssignments,
} from './types.js';

function indexPublicAddresses(publicAddresses: readonly number[]): Map<number, number> {
  const indexByAddress = new Map<number, number>();
  publicAddresses.forEach((address, index) => {
    if (indexByAddress.has(address)) {
      throw new TnatError(
        'E_MAPPING',
        `public address ${formatIpv4(address)} appears twice in nat.publicAddresses: list each address once`,
      );
    }
    indexByAddress.set(address, index);
  });
  return indexByAddress;
}

function slotsInHandOutOrder(clientCount: number): Int32Array {
  const slotOfClient = new Int32Array(clientCount);
  for (let client = 0; client < clientCount; client++) slotOfClient[client] = client;
  return slotOfClient;
}

/** Each client's previous slot if it is still a usable slot here, else -1. */
function previousSlots(
  clients: ClientIndex,
  layout: BlockLayout,
  addressIndex: ReadonlyMap<number, number>,
  previous: PreviousAssignments,
): Int32Array {
  const blocksPerAddress = layout.blocks.length;
  const slotOfClient = new Int32Array(clients.count).fill(-1);
  const { bindings } = previous;
  const numbers = bindings.publicAddresses.map((address) => addressIndex.get(address));
  // One pass over the columns: a Map.get per client costs several times more at a million.
  for (let row = 0; row < bindings.count; row++) {
    const address = bindings.client[row] ?? 0;
    const span = clients.spanOfAddress(address);
    const addressNumber = numbers[bindings.publicIndex[row] ?? 0];
    const block = layout.indexOfFirstPort(bindings.firstPort[row] ?? 0);
    if (!span || addressNumber === undefined || block < 0) continue;
    slotOfClient[span.start + address - span.pool.first] = addressNumber * blocksPerAddress + block;
  }
  return slotOfClient;
}

function slotsKeepingPrevious(
  clients: ClientIndex,
  layout: BlockLayout,
  addressIndex: ReadonlyMap<number, number>,
  previous: PreviousAssignments,
): Int32Array {
  const slotOfClient = previousSlots(clients, layout, addressIndex, previous);
  const taken = new Uint8Array(layout.blocks.length * addressIndex.size);
  // The earlier client in hand-out order keeps a slot that two previous entries claim.
  slotOfClient.forEach((slot, client) => {
    if (slot === -1) return;
    if (taken[slot] === 1) slotOfClient[client] = -1;
    else taken[slot] = 1;
  });
  let free = 0;
  for (let client = 0; client < clients.count; client++) {
    if (slotOfClient[client] !== -1) continue;
    while (taken[free] === 1) free++;
    taken[free] = 1;
    slotOfClient[client] = free;
  }
  return slotOfClient;
}

function clientsBySlot(slotOfClient: Int32Array): Int32Array {
  let highest = -1;
  for (const slot of slotOfClient) highest = Math.max(highest, slot);
  const clientOfSlot = new Int32Array(highest + 1).fill(-1);
  slotOfClient.forEach((slot, client) => {
    clientOfSlot[slot] = client;
  });
  return clientOfSlot;
}

class SlotMap implements PortMap {
  readonly blockSize: number;
  readonly publicAddresses: readonly number[];
  readonly blocks: readonly PortBlock[];
  readonly clientCount: number;
  private readonly clientOfSlot: Int32Array;

  constructor(
    private readonly clients: ClientIndex,
    private readonly layout: BlockLayout,
    private readonly addressIndex: ReadonlyMap<number, number>,
    private readonly slotOfClient: Int32Array,
  ) {
    this.blockSize = layout.blockSize;
    this.publicAddresses = Object.freeze([...addressIndex.keys()]);
    this.blocks = layout.blocks;
    this.clientCount = clients.count;
    this.clientOfSlot = clientsBySlot(slotOfClient);
  }

  private assignment(client: number, index: number, pool: ClientPool): Assignment {
    const slot = this.slotOfClient[index] ?? -1;
    const publicAddress = this.publicAddresses[Math.floor(slot / this.blocks.length)];
    const block = this.blocks[slot % this.blocks.length];
    if (publicAddress === undefined || block === undefined) {
      throw new Error(`client number ${index} has slot ${slot}, outside the layout`);
    }
    return { client, publicAddress, firstPort: block.first, lastPort: block.last, pool };
  }

  forward(client: number): Assignment | undefined {
    const span = Number.isInteger(client) ? this.clients.spanOfAddress(client) : undefined;
    if (!span) return undefined;
    return this.assignment(client, span.start + client - span.pool.first, span.pool);
  }

  reverse(publicAddress: number, port: number): Assignment | undefined {
    const addressNumber = this.addressIndex.get(publicAddress);
    const block = this.layout.indexOfPort(port);
    if (addressNumber === undefined || block < 0) return undefined;
    const index = this.clientOfSlot[addressNumber * this.blocks.length + block] ?? -1;
    const span = this.clients.spanOfIndex(index);
    if (!span) return undefined;
    return this.assignment(span.pool.first + index - span.start, index, span.pool);
  }

  *assignments(): Generator<Assignment> {
    for (const { pool, start } of this.clients.byAddress) {
      for (let address = pool.first; address <= pool.last; address++) {
        yield this.assignment(address, start + address - pool.first, pool);
      }
    }
  }

  /** Made once and shared: the renderers and the binding index all read them, none writes. */
  columns(): AssignmentColumns {
    return (this.columnsMade ??= this.makeColumns());
  }

  private columnsMade: AssignmentColumns | undefined;

  private makeColumns(): AssignmentColumns {
    const count = this.clientCount;
    const columns = {
      count,
      client: new Uint32Array(count),
      publicIndex: new Uint32Array(count),
      publicAddresses: this.publicAddresses,
      firstPort: new Int32Array(count),
      lastPort: new Int32Array(count),
    };
    const perAddress = this.blocks.length;
    const firsts = Int32Array.from(this.blocks, (block) => block.first);
    const lasts = Int32Array.from(this.blocks, (block) => block.last);
    let row = 0;
    for (const { pool, start } of this.clients.byAddress) {
      for (let address = pool.first; address <= pool.last; address++, row++) {
        const slot = this.slotOfClient[start + address - pool.first] ?? 0;
        const block = slot % perAddress;
        columns.client[row] = address;
        columns.publicIndex[row] = (slot - block) / perAddress;
        columns.firstPort[row] = firsts[block] ?? 0;
        columns.lastPort[row] = lasts[block] ?? 0;
      }
    }
    return columns;
  }
}

/**
 * Maps every client address of `pools` (pool order, then address order) onto a port block of a
 * public address. Throws E_MAPPING when pools overlap, a public address lies in a client subnet,
 * or the clients do not fit; the message says what would make them fit.
 */
export function mapClients(
  pools: readonly ClientPool[],
  settings: NatSettings,
  previous?: PreviousAssignments,
): PortMap {
  const addressIndex = indexPublicAddresses(settings.publicAddresses);
  rejectPublicAddressInPools(pools, settings.publicAddresses);
  const clients = new ClientIndex(pools);
  const layout = chooseBlockLayout(settings, clients.count, () =>
    describeClientSources(clients.inHandOutOrder),
  );
  const slotOfClient =
    previous?.blockSize === layout.blockSize
      ? slotsKeepingPrevious(clients, layout, addressIndex, previous)
      : slotsInHandOutOrder(clients.count);
  return new SlotMap(clients, layout, addressIndex, slotOfClient);
}

/**
 * Builds PreviousAssignments from what a ruleset says. When a client appears twice the first
 * entry wins, as the first matching SNAT rule does in the kernel.
 */
export function previousFromAssignments(
  blockSize: number,
  list: readonly { client: number; publicAddress: number; firstPort: number }[],
): PreviousAssignments {
  // Only the first port places a client; the block's end follows from the size.
  const withEnds = list.map(({ client, publicAddress, firstPort }) => ({
    client,
    publicAddress,
    firstPort,
    lastPort: firstPort + blockSize - 1,
  }));
  return { blockSize, bindings: bindingsOf(withEnds) };
}
