import fc from 'fast-check';
import {
  bindingAtRow,
  bindingsOf,
  mostCommonBlockSize,
  sameBindings,
  walkBindings,
  type Bindings,
} from '../../src/mapping/bindings.js';
import { assignmentColumns } from '../../src/mapping/columns.js';
import type { Binding } from '../../src/mapping/types.js';
import { mapClients } from '../../src/mapping/map.js';
import { clientBindings, type BindingColumns } from '../../src/archive/binding-columns.js';
import { ip, poolOf, publicAddresses } from './fixtures.js';

const rows = (bindings: Bindings): Binding[] =>
  Array.from({ length: bindings.count }, (_, row) => bindingAtRow(bindings, row));

const binding = (client: number, firstPort: number, publicAddress = 7): Binding => ({
  client,
  publicAddress,
  firstPort,
  lastPort: firstPort + 3,
});

/** The first binding of each client by a Set, ascending by client (stable). */
function firstOfEach(list: readonly Binding[]): Binding[] {
  const seen = new Set<number>();
  const firsts = list.filter((entry) => !seen.has(entry.client) && seen.add(entry.client));
  return firsts.sort((a, b) => a.client - b.client);
}

const listArb = fc.array(
  fc.record({
    client: fc.integer({ min: 0, max: 24 }),
    publicAddress: fc.constantFrom(ip('192.0.2.1'), ip('192.0.2.2'), ip('198.51.100.9')),
    firstPort: fc.constantFrom(1024, 1028, 2048),
    lastPort: fc.constantFrom(1027, 1031, 2051),
  }),
  { maxLength: 30 },
);

describe('bindingsOf', () => {
  test("keeps a client's first binding (its tcp rule before its udp one), in either order of the list", () => {
    const ascending = [binding(1, 10), binding(2, 20), binding(2, 21), binding(5, 50)];
    expect(rows(bindingsOf(ascending))).toEqual([binding(1, 10), binding(2, 20), binding(5, 50)]);
    const unsorted = [binding(5, 50), binding(2, 20), binding(5, 51), binding(1, 10)];
    expect(rows(bindingsOf(unsorted))).toEqual([binding(1, 10), binding(2, 20), binding(5, 50)]);
    expect(bindingsOf([]).count).toBe(0);
  });

  test('agrees with a Set of the clients on random lists, sorted or not', () => {
    fc.assert(
      fc.property(listArb, fc.boolean(), (list, sorted) => {
        const input = sorted ? [...list].sort((a, b) => a.client - b.client) : list;
        expect(rows(bindingsOf(input))).toEqual(firstOfEach(input));
      }),
      { numRuns: 300 },
    );
  });
});

describe('walkBindings', () => {
  test('reports every client once, ascending, as gone, added, or in both and whether the same, as a Map of each side says', () => {
    fc.assert(
      fc.property(listArb, listArb, (heldList, plannedList) => {
        const held = bindingsOf(heldList);
        const planned = bindingsOf(plannedList);
        const before = new Map(firstOfEach(heldList).map((entry) => [entry.client, entry]));
        const after = new Map(firstOfEach(plannedList).map((entry) => [entry.client, entry]));
        const seen: string[] = [];
        walkBindings(held, planned, {
          gone: (row) => seen.push(`gone ${held.client[row]}`),
          added: (row) => seen.push(`added ${planned.client[row]}`),
          both: (a, b, same) => {
            expect(held.client[a]).toBe(planned.client[b]);
            seen.push(`${same ? 'same' : 'changed'} ${held.client[a]}`);
          },
        });
        const clients = [...new Set([...before.keys(), ...after.keys()])].sort((a, b) => a - b);
        const expected = clients.map((client) => {
          const was = before.get(client);
          const now = after.get(client);
          if (!now) return `gone ${client}`;
          if (!was) return `added ${client}`;
          const same =
            was.publicAddress === now.publicAddress &&
            was.firstPort === now.firstPort &&
            was.lastPort === now.lastPort;
          return `${same ? 'same' : 'changed'} ${client}`;
        });
        expect(seen).toEqual(expected);
        expect(sameBindings(held, planned)).toBe(expected.every((line) => line.startsWith('same')));
      }),
      { numRuns: 300 },
    );
  });

  test('a visitor of one kind sees as many rows as a full one (each side advances without its visitor)', () => {
    const held = bindingsOf([binding(1, 10), binding(3, 30), binding(4, 40), binding(9, 90)]);
    const planned = bindingsOf([binding(2, 20), binding(3, 31), binding(4, 40), binding(7, 70)]);
    const gone: number[] = [];
    const added: number[] = [];
    const both: number[] = [];
    walkBindings(held, planned, { gone: (row) => gone.push(held.client[row] ?? -1) });
    walkBindings(held, planned, { added: (row) => added.push(planned.client[row] ?? -1) });
    walkBindings(held, planned, { both: (row) => both.push(held.client[row] ?? -1) });
    walkBindings(held, planned, {});
    expect([gone, added, both]).toEqual([
      [1, 9],
      [2, 7],
      [3, 4],
    ]);
  });

  test("a plan's columns are the same bindings as its assignments listed one by one", () => {
    const map = mapClients([poolOf('a', '10.0.0.0/26'), poolOf('b', '10.0.1.0/27')], {
      publicAddresses: publicAddresses(2),
      portRange: { first: 1024, last: 65535 },
      excludePorts: [],
      portsPerClient: 64,
      minPortsPerClient: 64,
    });
    const listed = bindingsOf(
      [...map.assignments()].map(({ client, publicAddress, firstPort, lastPort }) => ({
        client,
        publicAddress,
        firstPort,
        lastPort,
      })),
    );
    expect(sameBindings(listed, assignmentColumns(map))).toBe(true);
    const moved = bindingsOf(
      rows(listed).map((entry, i) => (i === 40 ? binding(entry.client, 9) : entry)),
    );
    expect(sameBindings(moved, assignmentColumns(map))).toBe(false);
  });
});

/** The size most blocks have, the larger on a tie; 0 for none. */
function referenceBlockSize(list: readonly Binding[]): number {
  const sizes = list.map((entry) => entry.lastPort - entry.firstPort + 1);
  const count = (size: number) => sizes.filter((other) => other === size).length;
  return [...sizes].sort((a, b) => count(b) - count(a) || b - a)[0] ?? 0;
}

describe('clientBindings and mostCommonBlockSize', () => {
  /** An index's columns, rows as listed, every binding for both protocols. */
  function indexColumns(list: readonly Binding[]): BindingColumns {
    const addresses = [...new Set(list.map((entry) => entry.publicAddress))];
    return {
      addresses,
      client: Uint32Array.from(list, (entry) => entry.client),
      address: Uint16Array.from(list, (entry) => addresses.indexOf(entry.publicAddress)),
      firstPort: Uint16Array.from(list, (entry) => entry.firstPort),
      lastPort: Uint16Array.from(list, (entry) => entry.lastPort),
      proto: new Uint8Array(list.length).fill(2),
      order: Uint32Array.from(list, (_, i) => i),
    };
  }

  test("an index's rows give the first binding of each client, as bindingsOf gives them, and the block size readAssignments counts", () => {
    fc.assert(
      fc.property(listArb, fc.boolean(), (list, sorted) => {
        const input = sorted ? [...list].sort((a, b) => a.client - b.client) : list;
        const columns = indexColumns(input);
        expect(rows(clientBindings(columns))).toEqual(rows(bindingsOf(input)));
        expect(mostCommonBlockSize(columns.firstPort, columns.lastPort, input.length)).toBe(
          referenceBlockSize(input),
        );
      }),
      { numRuns: 300 },
    );
  });
});
