import fc from 'fast-check';
import type { ClientPool } from '../../src/eduvpn/pool.js';
import { isTnatError } from '../../src/errors.js';
import { usableBlocks } from '../../src/mapping/blocks.js';
import { mapClients, previousFromAssignments } from '../../src/mapping/map.js';
import type { NatSettings, PortBlock, PortMap } from '../../src/mapping/types.js';
import { formatCidr4 } from '../../src/net/ipv4.js';
import { ip, poolOf } from './fixtures.js';

const NUM_RUNS = 300;
const FULL: PortBlock = { first: 1024, last: 65535 };
/** Never one of ours: generated public addresses lie in 192.0.2.0/24. */
const FOREIGN = ip('198.51.100.1');

/** Pools in distinct /22 cells of 10/8, so they never overlap; up to 509 clients each. */
const poolsArb = fc
  .uniqueArray(
    fc.record({
      cell: fc.integer({ min: 0, max: 16383 }),
      prefix: fc.integer({ min: 23, max: 30 }),
    }),
    { selector: (pool) => pool.cell, maxLength: 8 },
  )
  .map((cells) =>
    cells.map(({ cell, prefix }, index) =>
      poolOf(`p${index}`, formatCidr4({ network: ip('10.0.0.0') + cell * 1024, prefix })),
    ),
  );

const portRangeArb = fc.oneof(
  { arbitrary: fc.constant(FULL), weight: 3 },
  {
    arbitrary: fc
      .tuple(fc.integer({ min: 1, max: 65535 }), fc.integer({ min: 1, max: 65535 }))
      .map(([a, b]) => ({ first: Math.min(a, b), last: Math.max(a, b) })),
    weight: 1,
  },
);

const exclusionArb = fc
  .tuple(fc.integer({ min: 1, max: 65535 }), fc.integer({ min: 0, max: 5000 }))
  .map(([first, length]) => ({ first, last: Math.min(65535, first + length) }));

const powerOfTwoArb = (maxExponent: number) =>
  fc.integer({ min: 0, max: maxExponent }).map((exponent) => 2 ** exponent);

const settingsArb: fc.Arbitrary<NatSettings> = fc.record({
  publicAddresses: fc
    .uniqueArray(fc.integer({ min: 1, max: 254 }), { minLength: 1, maxLength: 4 })
    .map((hosts) => hosts.map((host) => ip('192.0.2.0') + host)),
  portRange: portRangeArb,
  excludePorts: fc.array(exclusionArb, { maxLength: 3 }),
  portsPerClient: fc.oneof(fc.constant<'auto'>('auto'), powerOfTwoArb(15)),
  minPortsPerClient: powerOfTwoArb(10),
});

function clientsInHandOutOrder(pools: readonly ClientPool[]): number[] {
  return pools.flatMap((pool) =>
    Array.from({ length: pool.last - pool.first + 1 }, (_, offset) => pool.first + offset),
  );
}

function fits(settings: NatSettings, clients: number, blockSize: number): boolean {
  const blocks = usableBlocks(settings.portRange, settings.excludePorts, blockSize).length;
  return blocks > 0 && blocks * settings.publicAddresses.length >= clients;
}

/** The block size the spec asks for, or undefined when nothing fits. */
function expectedBlockSize(settings: NatSettings, clients: number): number | undefined {
  if (settings.portsPerClient !== 'auto') {
    return fits(settings, clients, settings.portsPerClient) ? settings.portsPerClient : undefined;
  }
  for (let size = 32768; size >= settings.minPortsPerClient; size /= 2) {
    if (fits(settings, clients, size)) return size;
  }
  return undefined;
}

/** The index of the block starting at `first` in blocks sorted top down, or NaN. */
function blockIndexOf(blocks: readonly PortBlock[], first: number): number {
  let low = 0;
  let high = blocks.length - 1;
  while (low <= high) {
    const middle = (low + high) >>> 1;
    const candidate = blocks[middle]?.first ?? 0;
    if (candidate === first) return middle;
    if (candidate > first) low = middle + 1;
    else high = middle - 1;
  }
  return Number.NaN;
}

/** A slot number: address index * blocks per address + block index. */
function slotOf(map: PortMap, publicAddress: number, block: PortBlock): number {
  const addressIndex = map.publicAddresses.indexOf(publicAddress);
  return addressIndex * map.blocks.length + blockIndexOf(map.blocks, block.first);
}

/**
 * Checks every invariant of a map and returns client -> slot. Problems are collected and
 * asserted once: an expect per client would make a few hundred runs take minutes.
 */
function checkMap(map: PortMap, pools: readonly ClientPool[], settings: NatSettings, salt: number) {
  const { portRange, excludePorts } = settings;
  const problems: string[] = [];
  const expected = usableBlocks(portRange, excludePorts, map.blockSize);
  expect(map.blocks.length).toBe(expected.length);
  map.blocks.forEach((block, index) => {
    const other = expected[index];
    if (block.first !== other?.first || block.last !== other.last) problems.push(`block ${index}`);
  });
  map.blocks.forEach((block, index) => {
    if (block.last - block.first + 1 !== map.blockSize) problems.push(`size of ${block.first}`);
    if (block.first < portRange.first || block.last > portRange.last) {
      problems.push(`${block.first} outside the range`);
    }
    if (excludePorts.some((ex) => ex.first <= block.last && ex.last >= block.first)) {
      problems.push(`${block.first} holds an excluded port`);
    }
    if (block.last >= (map.blocks[index - 1]?.first ?? Infinity)) {
      problems.push(`${block.first} overlaps the block before it`);
    }
  });

  const poolSet = new Set(pools);
  const slots = new Map<number, number>();
  const used = new Set<number>();
  let previousClient = -1;
  for (const assignment of map.assignments()) {
    const { client, publicAddress, firstPort, lastPort, pool } = assignment;
    const block = { first: firstPort, last: lastPort };
    if (client <= previousClient) problems.push(`${client} out of order`);
    previousClient = client;
    if (!poolSet.has(pool) || client < pool.first || client > pool.last) {
      problems.push(`${client} not in its pool`);
    }
    const slot = slotOf(map, publicAddress, block);
    if (!(slot >= 0) || used.has(slot)) problems.push(`${client} has slot ${slot}`);
    // One of the map's blocks, whole.
    if (map.blocks[slot % map.blocks.length]?.last !== lastPort) problems.push(`${client} block`);
    used.add(slot);
    slots.set(client, slot);
    const forward = map.forward(client);
    if (
      forward?.publicAddress !== publicAddress ||
      forward.firstPort !== firstPort ||
      forward.lastPort !== lastPort ||
      forward.pool !== pool
    ) {
      problems.push(`forward of ${client}`);
    }
    const inside = block.first + ((salt + client) % map.blockSize);
    for (const port of [block.first, block.last, inside]) {
      if (map.reverse(publicAddress, port)?.client !== client) problems.push(`reverse ${port}`);
    }
    if (problems.length > 10) break;
  }
  expect(problems).toEqual([]);
  expect(slots.size).toBe(map.clientCount);
  expect(map.clientCount).toBe(clientsInHandOutOrder(pools).length);
  expect(map.reverse(FOREIGN, map.blocks[0]?.first ?? 65535)).toBeUndefined();
  return { slots, used };
}

function checkProbes(map: PortMap, used: ReadonlySet<number>, probes: [number, number][]) {
  for (const [addressChoice, port] of probes) {
    const publicAddress = map.publicAddresses[addressChoice % map.publicAddresses.length] ?? 0;
    const found = map.reverse(publicAddress, port);
    const block = map.blocks.find((candidate) => candidate.first <= port && port <= candidate.last);
    const handedOut = block !== undefined && used.has(slotOf(map, publicAddress, block));
    expect(found !== undefined).toBe(handedOut);
    if (found) {
      expect(found.firstPort <= port && port <= found.lastPort).toBe(true);
      expect(map.forward(found.client)).toEqual(found);
    }
  }
}

const probesArb = fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 65536 })), {
  maxLength: 50,
});

describe('mapClients properties', () => {
  test('a map is valid or the clients truly do not fit', () => {
    fc.assert(
      fc.property(poolsArb, settingsArb, fc.nat(), probesArb, (pools, settings, salt, probes) => {
        const clients = clientsInHandOutOrder(pools);
        const blockSize = expectedBlockSize(settings, clients.length);
        let map: PortMap;
        try {
          map = mapClients(pools, settings);
        } catch (error) {
          expect(isTnatError(error) && error.code === 'E_MAPPING').toBe(true);
          expect(blockSize).toBeUndefined();
          return;
        }
        expect(map.blockSize).toBe(blockSize);
        const { slots, used } = checkMap(map, pools, settings, salt);
        // Without previous, client i in hand-out order holds slot i.
        expect(clients.filter((client, index) => slots.get(client) !== index)).toEqual([]);
        checkProbes(map, used, probes);
      }),
      { numRuns: NUM_RUNS },
    );
  });

  test('with previous, kept clients keep their slot and new ones take the lowest free slots', () => {
    const scenarioArb = fc
      .record({
        universe: poolsArb.filter((pools) => pools.length > 0),
        blockSize: powerOfTwoArb(10).map((size) => size * 32),
        excludePorts: fc.array(exclusionArb, { maxLength: 2 }),
        spareAddresses: fc.integer({ min: 0, max: 1 }),
      })
      .chain((scenario) =>
        fc.record({
          scenario: fc.constant(scenario),
          before: fc.shuffledSubarray(scenario.universe),
          after: fc.shuffledSubarray(scenario.universe),
          salt: fc.nat(),
        }),
      );
    fc.assert(
      fc.property(scenarioArb, ({ scenario, before, after, salt }) => {
        const perAddress = usableBlocks(FULL, scenario.excludePorts, scenario.blockSize).length;
        fc.pre(perAddress > 0);
        const needed = Math.ceil(clientsInHandOutOrder(scenario.universe).length / perAddress);
        const settings: NatSettings = {
          publicAddresses: Array.from(
            { length: needed + scenario.spareAddresses },
            (_, index) => ip('192.0.2.1') + index,
          ),
          portRange: FULL,
          excludePorts: scenario.excludePorts,
          portsPerClient: scenario.blockSize,
          minPortsPerClient: 1,
        };
        const first = mapClients(before, settings);
        const previous = previousFromAssignments(
          first.blockSize,
          [...first.assignments()].map((a) => ({
            client: a.client,
            publicAddress: a.publicAddress,
            firstPort: a.firstPort,
          })),
        );
        const second = mapClients(after, settings, previous);
        const was = checkMap(first, before, settings, salt).slots;
        const is = checkMap(second, after, settings, salt).slots;

        const kept = new Set<number>();
        const moved: number[] = [];
        const newSlots: number[] = [];
        for (const client of clientsInHandOutOrder(after)) {
          const slot = was.get(client);
          if (slot === undefined) {
            newSlots.push(is.get(client) ?? -1);
          } else {
            if (is.get(client) !== slot) moved.push(client);
            kept.add(slot);
          }
        }
        expect(moved).toEqual([]);
        const lowestFree: number[] = [];
        for (let slot = 0; lowestFree.length < newSlots.length; slot++) {
          if (!kept.has(slot)) lowestFree.push(slot);
        }
        expect(newSlots).toEqual(lowestFree);
      }),
      { numRuns: NUM_RUNS },
    );
  });
});
