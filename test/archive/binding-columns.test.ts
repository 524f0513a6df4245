import fc from 'fast-check';
import { rowsOfBindings, rowsOfList, searchOrder } from '../../src/archive/binding-columns.js';
import { bindingsOf } from '../../src/mapping/bindings.js';

/** Positions by (address, first port, position): the order a trace's binary search needs. */
function referenceOrder(address: readonly number[], firstPort: readonly number[]): number[] {
  return address
    .map((_, at) => at)
    .sort(
      (a, b) =>
        (address[a] ?? 0) - (address[b] ?? 0) || (firstPort[a] ?? 0) - (firstPort[b] ?? 0) || a - b,
    );
}

describe('searchOrder', () => {
  test('sorts by address, first port and position, ties and extremes included', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            address: fc.oneof(fc.integer({ min: 0, max: 3 }), fc.constant(0xffff)),
            firstPort: fc.oneof(fc.integer({ min: 0, max: 4 }), fc.constant(0xffff)),
          }),
          { maxLength: 60 },
        ),
        (rows) => {
          const address = Uint16Array.from(rows, (row) => row.address);
          const firstPort = Uint16Array.from(rows, (row) => row.firstPort);
          expect([...searchOrder(address, firstPort)]).toEqual(
            referenceOrder([...address], [...firstPort]),
          );
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('rowsOfBindings', () => {
  test("a plan's bindings give the rows its rules read back would give (addresses numbered by first use)", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(
          fc.record({
            client: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
            publicAddress: fc.constantFrom(3, 1, 2, 0xc0000201),
            firstPort: fc.integer({ min: 0, max: 65000 }),
            size: fc.constantFrom(1, 64, 535),
          }),
          { selector: (binding) => binding.client, maxLength: 40 },
        ),
        (list) => {
          const read = [...list]
            .sort((a, b) => a.client - b.client)
            .map(({ size, ...binding }) => ({
              ...binding,
              lastPort: binding.firstPort + size - 1,
              proto: 'both' as const,
            }));
          expect(rowsOfBindings(bindingsOf(read))).toEqual(rowsOfList(read));
        },
      ),
      { numRuns: 300 },
    );
  });

  test('a port beyond 16 bits gives no rows (and so no index), either way', () => {
    const read = [
      { client: 1, publicAddress: 9, firstPort: 65535, lastPort: 65536, proto: 'both' as const },
    ];
    expect(rowsOfList(read)).toBeUndefined();
    expect(rowsOfBindings(bindingsOf(read))).toBeUndefined();
  });
});
