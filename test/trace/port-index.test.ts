/** The trace's port index gives exactly what a scan of every block gives, in the same order. */
import fc from 'fast-check';
import type { ReadAssignment } from '../../src/render/read-rules.js';
import { buildPortIndex } from '../../src/trace/port-index.js';

const assignment = fc
  .record({
    client: fc.integer({ min: 1, max: 1000 }),
    publicAddress: fc.constantFrom(1, 2, 3),
    firstPort: fc.integer({ min: 1, max: 2000 }),
    length: fc.integer({ min: 0, max: 300 }),
    proto: fc.constantFrom('both', 'tcp', 'udp'),
  })
  .map(({ length, ...rest }): ReadAssignment => ({
    ...rest,
    lastPort: Math.min(65535, rest.firstPort + length),
    proto: rest.proto,
  }));

const scan = (list: readonly ReadAssignment[], port: number, address: number | undefined) =>
  list.filter(
    (a) =>
      (address === undefined || a.publicAddress === address) &&
      a.firstPort <= port &&
      port <= a.lastPort,
  );

describe('port index', () => {
  test('equals a scan for any blocks, overlapping or not, with or without an address', () => {
    fc.assert(
      fc.property(
        fc.array(assignment, { maxLength: 200 }),
        fc.integer({ min: 0, max: 2400 }),
        fc.constantFrom(1, 2, 3, 4, undefined),
        (list, port, address) => {
          expect(buildPortIndex(list).holding(port, address)).toEqual(scan(list, port, address));
        },
      ),
      { numRuns: 500 },
    );
  });

  test('aligned blocks of a /16 layout: the one client, tcp and udp', () => {
    const list: ReadAssignment[] = [];
    for (let client = 0; client < 1000; client++) {
      for (const proto of ['tcp', 'udp'] as const) {
        list.push({
          client,
          publicAddress: 7,
          firstPort: 65472 - client * 64,
          lastPort: 65535 - client * 64,
          proto,
        });
      }
    }
    const found = buildPortIndex(list).holding(65472 - 500 * 64 + 3, 7);
    expect(found.map((a) => [a.client, a.proto])).toEqual([
      [500, 'tcp'],
      [500, 'udp'],
    ]);
  });
});
