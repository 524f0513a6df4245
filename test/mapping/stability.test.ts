import { mapClients, previousFromAssignments } from '../../src/mapping/map.js';
import type { NatSettings, PortMap, PreviousAssignments } from '../../src/mapping/types.js';
import type { ClientPool } from '../../src/eduvpn/pool.js';
import { ip, poolOf, publicAddresses, settingsOf } from './fixtures.js';

const A = poolOf('a', '10.0.0.0/26'); // 61 clients
const B = poolOf('b', '10.0.1.0/26');
const C = poolOf('c', '10.0.2.0/26');
const D = poolOf('d', '10.0.3.0/25'); // 125 clients
const Z = poolOf('z', '10.0.9.0/27'); // 29 clients
/** A client's port block in `map`, to compare two maps by. */
function blockOf(map: PortMap, client: number) {
  const assignment = map.forward(client);
  return assignment && [assignment.firstPort, assignment.lastPort];
}

const FIXED = settingsOf({ publicAddresses: publicAddresses(2), portsPerClient: 256 });

function previousOf(map: PortMap): PreviousAssignments {
  return previousFromAssignments(
    map.blockSize,
    [...map.assignments()].map((a) => ({
      client: a.client,
      publicAddress: a.publicAddress,
      firstPort: a.firstPort,
    })),
  );
}

/** client -> "public address:first port" */
function slotsOf(map: PortMap): Map<number, string> {
  return new Map(
    [...map.assignments()].map((a) => [a.client, `${a.publicAddress}:${a.firstPort}`]),
  );
}

function clientsOf(pools: readonly ClientPool[]): number[] {
  return pools.flatMap((pool) =>
    Array.from({ length: pool.last - pool.first + 1 }, (_, offset) => pool.first + offset),
  );
}

function remap(before: readonly ClientPool[], after: readonly ClientPool[], settings: NatSettings) {
  const first = mapClients(before, settings);
  return { first, second: mapClients(after, settings, previousOf(first)) };
}

describe('stability with a fixed block size', () => {
  test.each<[string, ClientPool[], ClientPool[]]>([
    ['a profile added in front', [A, B, C], [Z, A, B, C]],
    ['a profile removed in the middle', [A, B, C], [A, C]],
    ['pools reordered', [A, B, C], [C, A, B]],
    ['a profile replaced by a larger one in front', [A, B, C], [D, A, C]],
  ])('%s leaves every other client where it was', (_name, before, after) => {
    const { first, second } = remap(before, after, FIXED);
    const was = slotsOf(first);
    const is = slotsOf(second);
    const kept = clientsOf(after).filter((client) => was.has(client));
    expect(kept.length).toBeGreaterThan(0);
    for (const client of kept) expect(is.get(client)).toBe(was.get(client));
    expect(second.clientCount).toBe(clientsOf(after).length);
  });

  test('new clients take the free slots in slot order', () => {
    const { second } = remap([A, B, C], [Z, A, B, C], FIXED);
    // A, B and C hold blocks 0-182 of the first address; Z starts right after them.
    expect(second.forward(Z.first)?.firstPort).toBe(65536 - 184 * 256);
    expect(second.forward(Z.last)?.firstPort).toBe(65536 - 212 * 256);
  });

  test('a removed profile frees its slots for the next new one', () => {
    const { first, second } = remap([A, B, C], [A, C], FIXED);
    const third = mapClients([A, C, D], FIXED, previousOf(second));
    const was = slotsOf(first);
    // D's first 61 clients land exactly where B's were, the rest after C.
    clientsOf([B]).forEach((client, offset) => {
      expect(slotsOf(third).get(D.first + offset)).toBe(was.get(client));
    });
    expect(third.forward(D.first + 61)?.firstPort).toBe(65536 - 184 * 256);
  });

  test('without previous, a profile added in front moves everyone', () => {
    const before = mapClients([A, B], FIXED);
    const after = mapClients([Z, A, B], FIXED);
    expect(blockOf(after, A.first)).not.toEqual(blockOf(before, A.first));
  });

  test('a previous block that is now excluded is given up, nobody else moves', () => {
    const before = mapClients([A], FIXED);
    const settings = { ...FIXED, excludePorts: [{ first: 65300, last: 65300 }] };
    const after = mapClients([A], settings, previousOf(before));
    expect(after.forward(A.first)?.firstPort).toBe(65536 - 62 * 256);
    for (const client of clientsOf([A]).slice(1)) {
      expect(blockOf(after, client)).toEqual(blockOf(before, client));
    }
  });

  test('clients of a public address that was removed move to free slots', () => {
    const settings = settingsOf({ publicAddresses: publicAddresses(2), portsPerClient: 16384 });
    const before = mapClients([poolOf('x', '10.0.0.0/29')], settings); // 5 clients, 3 blocks each
    expect(before.forward(ip('10.0.0.5'))?.publicAddress).toBe(ip('192.0.2.2'));
    const moved = { ...settings, publicAddresses: [ip('192.0.2.2'), ip('192.0.2.3')] };
    const after = mapClients([poolOf('x', '10.0.0.0/29')], moved, previousOf(before));
    expect(after.forward(ip('10.0.0.5'))).toMatchObject({
      publicAddress: ip('192.0.2.2'),
      firstPort: 49152,
    });
    // The lowest free slot is the last block of 192.0.2.2, then 192.0.2.3 from the top.
    expect(after.forward(ip('10.0.0.2'))).toMatchObject({
      publicAddress: ip('192.0.2.2'),
      firstPort: 16384,
    });
    expect(after.forward(ip('10.0.0.3'))).toMatchObject({
      publicAddress: ip('192.0.2.3'),
      firstPort: 49152,
    });
  });

  test('when two previous entries claim one slot, the earlier client keeps it', () => {
    const previous = previousFromAssignments(256, [
      { client: ip('10.0.0.3'), publicAddress: ip('192.0.2.1'), firstPort: 1024 },
      { client: ip('10.0.0.2'), publicAddress: ip('192.0.2.1'), firstPort: 1024 },
    ]);
    const map = mapClients([poolOf('x', '10.0.0.0/29')], FIXED, previous);
    expect(map.forward(ip('10.0.0.2'))?.firstPort).toBe(1024);
    expect(map.forward(ip('10.0.0.3'))?.firstPort).toBe(65280);
    expect(map.reverse(ip('192.0.2.1'), 1024)?.client).toBe(ip('10.0.0.2'));
  });
});

describe('previous is ignored at another block size', () => {
  test.each<[string, NatSettings, PreviousAssignments]>([
    [
      'a fixed size that changed',
      FIXED,
      previousFromAssignments(128, [
        { client: A.first, publicAddress: ip('192.0.2.1'), firstPort: 1024 },
      ]),
    ],
    [
      'auto choosing another size',
      settingsOf(),
      previousFromAssignments(256, [
        { client: A.first, publicAddress: ip('192.0.2.1'), firstPort: 1024 },
      ]),
    ],
  ])('%s', (_name, settings, previous) => {
    const fresh = slotsOf(mapClients([A, B, C, D], settings));
    expect(slotsOf(mapClients([A, B, C, D], settings, previous))).toEqual(fresh);
  });
});
