/**
 * A PortMap backed by a plain array, for tests that need exact control over which client gets
 * which (public address, block): sparse clients, several public addresses, odd block sizes.
 */
import type { ClientPool } from '../../src/eduvpn/pool.js';
import type { Assignment, Binding, PortBlock, PortMap } from '../../src/mapping/types.js';
import { parseIpv4 } from '../../src/net/ipv4.js';

/** A binding without its pool: the map gives every one the same test pool. */
export type PlainAssignment = Binding;

export function ip(text: string): number {
  const value = parseIpv4(text);
  if (value === undefined) throw new Error(`test address ${text} is not IPv4`);
  return value;
}

function testPool(first: number, last: number): ClientPool {
  return {
    profileId: 'test',
    protocol: 'wireguard',
    origin: { file: 'test' },
    subnet4: { network: first, prefix: 32 },
    first,
    last,
  };
}

export function arrayPortMap(list: readonly PlainAssignment[], blockSize: number): PortMap {
  const sorted = [...list].sort((a, b) => a.client - b.client);
  const pool = testPool(sorted[0]?.client ?? 0, sorted.at(-1)?.client ?? 0);
  const assignments: Assignment[] = sorted.map((entry) => ({ ...entry, pool }));
  const byClient = new Map(assignments.map((entry) => [entry.client, entry]));
  const publicAddresses = [...new Set(sorted.map((entry) => entry.publicAddress))];
  const blocks = [
    ...new Map(
      sorted.map((entry) => [entry.firstPort, { first: entry.firstPort, last: entry.lastPort }]),
    ).values(),
  ];
  return {
    blockSize,
    publicAddresses,
    blocks,
    clientCount: assignments.length,
    forward: (client) => byClient.get(client),
    reverse: (publicAddress, port) =>
      assignments.find(
        (entry) =>
          entry.publicAddress === publicAddress &&
          entry.firstPort <= port &&
          port <= entry.lastPort,
      ),
    assignments: () => assignments,
  };
}

export interface SequentialOptions {
  /** Inclusive client address ranges, e.g. [['10.42.0.2', '10.42.0.41']]. */
  readonly clients: readonly (readonly [string, string])[];
  readonly publicAddresses: readonly string[];
  readonly blockSize: number;
  /** The ports handed out, top first (default 1024-65535). */
  readonly portRange?: PortBlock;
}

/**
 * Hands out blocks as the original script does: downwards from the top of the range, spilling
 * to the next public address when one is full.
 */
export function sequentialPortMap(options: SequentialOptions): PortMap {
  const range = options.portRange ?? { first: 1024, last: 65535 };
  const perAddress = Math.floor((range.last - range.first + 1) / options.blockSize);
  const list: PlainAssignment[] = [];
  for (const [from, to] of options.clients) {
    for (let client = ip(from); client <= ip(to); client++) {
      const slot = list.length;
      const address = options.publicAddresses[Math.floor(slot / perAddress)];
      if (address === undefined) throw new Error(`test map: client ${slot} does not fit`);
      const last = range.last - (slot % perAddress) * options.blockSize;
      list.push({
        client,
        publicAddress: ip(address),
        firstPort: last - options.blockSize + 1,
        lastPort: last,
      });
    }
  }
  return arrayPortMap(list, options.blockSize);
}
