import fc from 'fast-check';
import { assignmentColumns } from '../../src/mapping/columns.js';
import { mapClients, previousFromAssignments } from '../../src/mapping/map.js';
import type { PortMap } from '../../src/mapping/types.js';
import { formatCidr4 } from '../../src/net/ipv4.js';
import { arrayPortMap } from '../helpers/port-map.js';
import { ip, poolOf, publicAddresses } from './fixtures.js';

/** The columns as read from assignments(), one object per client: what columns() saves. */
function columnsOfAssignments(map: PortMap) {
  const list = [...map.assignments()];
  return {
    client: list.map((entry) => entry.client),
    publicAddress: list.map((entry) => entry.publicAddress),
    firstPort: list.map((entry) => entry.firstPort),
    lastPort: list.map((entry) => entry.lastPort),
  };
}

function plainColumns(map: PortMap) {
  const columns = assignmentColumns(map);
  expect(columns.client).toHaveLength(columns.count);
  return {
    client: [...columns.client],
    publicAddress: [...columns.publicIndex].map((index) => columns.publicAddresses[index]),
    firstPort: [...columns.firstPort],
    lastPort: [...columns.lastPort],
  };
}

/** Pools in distinct /22 cells of `base`/18, in any order, so they never overlap. */
const poolsArb = (base: string) =>
  fc
    .uniqueArray(
      fc.record({
        cell: fc.integer({ min: 0, max: 15 }),
        prefix: fc.integer({ min: 22, max: 31 }),
      }),
      { selector: (pool) => pool.cell, maxLength: 6 },
    )
    .map((cells) =>
      cells.map(({ cell, prefix }, index) =>
        poolOf(`${base}-${index}`, formatCidr4({ network: ip(base) + cell * 1024, prefix })),
      ),
    );

describe('assignmentColumns', () => {
  test("a mapping's own columns equal its assignments, also when clients kept earlier slots", () => {
    fc.assert(
      fc.property(
        poolsArb('10.0.0.0'),
        poolsArb('10.1.0.0'),
        fc.integer({ min: 4, max: 8 }),
        (before, after, count) => {
          const settings = {
            publicAddresses: publicAddresses(count),
            portRange: { first: 1024, last: 65535 },
            excludePorts: [{ first: 40000, last: 40100 }],
            portsPerClient: 16,
            minPortsPerClient: 16,
          };
          const first = mapClients(before, settings);
          const previous = previousFromAssignments(
            first.blockSize,
            [...first.assignments()].map((entry) => ({
              client: entry.client,
              publicAddress: entry.publicAddress,
              firstPort: entry.firstPort,
            })),
          );
          for (const map of [first, mapClients([...after, ...before], settings, previous)]) {
            expect(typeof map.columns).toBe('function');
            expect(plainColumns(map)).toEqual(columnsOfAssignments(map));
          }
        },
      ),
      { numRuns: 100 },
    );
  });

  test('a map without columns() is read from its assignments and sorted by client', () => {
    const map = arrayPortMap(
      [
        { client: ip('10.0.0.9'), publicAddress: ip('192.0.2.2'), firstPort: 10, lastPort: 19 },
        { client: ip('10.0.0.3'), publicAddress: ip('192.0.2.1'), firstPort: 20, lastPort: 29 },
      ],
      10,
    );
    // arrayPortMap hands out its assignments sorted; reversed, the columns must sort them.
    const reversed: PortMap = { ...map, assignments: () => [...map.assignments()].reverse() };
    expect(plainColumns(reversed)).toEqual({
      client: [ip('10.0.0.3'), ip('10.0.0.9')],
      publicAddress: [ip('192.0.2.1'), ip('192.0.2.2')],
      firstPort: [20, 10],
      lastPort: [29, 19],
    });
  });
});
