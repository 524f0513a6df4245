/**
 * A PortMap's assignments as columns of typed arrays, ascending by client: what the renderers
 * walk. A million Assignment objects (and the arrays a tree of them needs) cost more in garbage
 * collection than writing the rules does (issue 13).
 */
import type { AssignmentColumns, PortMap } from './types.js';

export type { AssignmentColumns } from './types.js';

interface Filling {
  readonly client: Uint32Array;
  readonly publicIndex: Uint32Array;
  readonly firstPort: Int32Array;
  readonly lastPort: Int32Array;
}

function filling(count: number): Filling {
  return {
    client: new Uint32Array(count),
    publicIndex: new Uint32Array(count),
    firstPort: new Int32Array(count),
    lastPort: new Int32Array(count),
  };
}

function isAscending(client: Uint32Array, count: number): boolean {
  for (let i = 1; i < count; i++) if ((client[i] ?? 0) < (client[i - 1] ?? 0)) return false;
  return true;
}

/** The same rows ordered by client; a stable sort, as Array.prototype.sort is. */
function sortedByClient(unsorted: Filling, count: number): Filling {
  const order = Array.from({ length: count }, (_, i) => i);
  order.sort((a, b) => (unsorted.client[a] ?? 0) - (unsorted.client[b] ?? 0));
  const sorted = filling(count);
  order.forEach((from, to) => {
    sorted.client[to] = unsorted.client[from] ?? 0;
    sorted.publicIndex[to] = unsorted.publicIndex[from] ?? 0;
    sorted.firstPort[to] = unsorted.firstPort[from] ?? 0;
    sorted.lastPort[to] = unsorted.lastPort[from] ?? 0;
  });
  return sorted;
}

export function assignmentColumns(map: PortMap): AssignmentColumns {
  return map.columns?.() ?? columnsOfAssignments(map);
}

function columnsOfAssignments(map: PortMap): AssignmentColumns {
  let rows = filling(map.clientCount);
  const indexOfAddress = new Map<number, number>();
  const publicAddresses: number[] = [];
  let count = 0;
  for (const { client, publicAddress, firstPort, lastPort } of map.assignments()) {
    if (count === rows.client.length) {
      // A map whose clientCount undercounts its assignments: grow rather than trust it.
      const grown = filling(Math.max(16, count * 2));
      grown.client.set(rows.client);
      grown.publicIndex.set(rows.publicIndex);
      grown.firstPort.set(rows.firstPort);
      grown.lastPort.set(rows.lastPort);
      rows = grown;
    }
    let index = indexOfAddress.get(publicAddress);
    if (index === undefined) {
      index = publicAddresses.push(publicAddress) - 1;
      indexOfAddress.set(publicAddress, index);
    }
    rows.client[count] = client;
    rows.publicIndex[count] = index;
    rows.firstPort[count] = firstPort;
    rows.lastPort[count] = lastPort;
    count++;
  }
  const trimmed: Filling = {
    client: rows.client.subarray(0, count),
    publicIndex: rows.publicIndex.subarray(0, count),
    firstPort: rows.firstPort.subarray(0, count),
    lastPort: rows.lastPort.subarray(0, count),
  };
  const ordered = isAscending(trimmed.client, count) ? trimmed : sortedByClient(trimmed, count);
  return { count, publicAddresses, ...ordered };
}
