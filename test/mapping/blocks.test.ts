import { BlockLayout, usableBlocks } from '../../src/mapping/blocks.js';
import type { PortBlock } from '../../src/mapping/types.js';

const FULL: PortBlock = { first: 1024, last: 65535 };
const EPHEMERAL: PortBlock = { first: 32768, last: 60999 };

function firsts(blocks: readonly PortBlock[]): number[] {
  return blocks.map((block) => block.first);
}

describe('usableBlocks', () => {
  test('range 1024-65535 in blocks of 256 gives 252 blocks from the top down', () => {
    const blocks = usableBlocks(FULL, [], 256);
    expect(blocks).toHaveLength(252);
    expect(blocks.slice(0, 3)).toEqual([
      { first: 65280, last: 65535 },
      { first: 65024, last: 65279 },
      { first: 64768, last: 65023 },
    ]);
    expect(blocks.at(-1)).toEqual({ first: 1024, last: 1279 });
  });

  test.each<
    [string, PortBlock, PortBlock[], number, number, PortBlock | undefined, PortBlock | undefined]
  >([
    // name, range, exclude, size, count, first block, last block
    [
      'top port excluded',
      FULL,
      [{ first: 65535, last: 65535 }],
      256,
      251,
      { first: 65024, last: 65279 },
      { first: 1024, last: 1279 },
    ],
    [
      'bottom port excluded',
      FULL,
      [{ first: 1024, last: 1024 }],
      256,
      251,
      { first: 65280, last: 65535 },
      { first: 1280, last: 1535 },
    ],
    [
      'one port inside',
      FULL,
      [{ first: 40000, last: 40000 }],
      256,
      251,
      { first: 65280, last: 65535 },
      { first: 1024, last: 1279 },
    ],
    [
      'two ports straddling a block edge',
      FULL,
      [{ first: 65279, last: 65280 }],
      256,
      250,
      { first: 64768, last: 65023 },
      { first: 1024, last: 1279 },
    ],
    ['the whole range', FULL, [FULL], 256, 0, undefined, undefined],
    ['more than the whole range', FULL, [{ first: 1, last: 65535 }], 1, 0, undefined, undefined],
    [
      'an exclusion outside the range',
      FULL,
      [{ first: 1, last: 1023 }],
      256,
      252,
      { first: 65280, last: 65535 },
      { first: 1024, last: 1279 },
    ],
    [
      'range not a multiple of the size',
      { first: 1000, last: 65535 },
      [],
      256,
      252,
      { first: 65280, last: 65535 },
      { first: 1024, last: 1279 },
    ],
    [
      'range of exactly one block',
      { first: 1024, last: 1279 },
      [],
      256,
      1,
      { first: 1024, last: 1279 },
      { first: 1024, last: 1279 },
    ],
    ['range smaller than a block', { first: 1024, last: 1100 }, [], 256, 0, undefined, undefined],
    [
      'blocks of one port',
      { first: 10, last: 12 },
      [{ first: 11, last: 11 }],
      1,
      2,
      { first: 12, last: 12 },
      { first: 10, last: 10 },
    ],
    [
      'one block of 32768',
      FULL,
      [],
      32768,
      1,
      { first: 32768, last: 65535 },
      { first: 32768, last: 65535 },
    ],
  ])('%s', (_name, range, exclude, size, count, top, bottom) => {
    const blocks = usableBlocks(range, exclude, size);
    expect(blocks).toHaveLength(count);
    expect(blocks[0]).toEqual(top);
    expect(blocks.at(-1)).toEqual(bottom);
  });

  test('the kernel ephemeral range 32768-60999 leaves 17 blocks above it and 124 below', () => {
    const blocks = usableBlocks(FULL, [EPHEMERAL], 256);
    expect(blocks).toHaveLength(141);
    expect(blocks[16]).toEqual({ first: 61184, last: 61439 });
    // 60928-61183 holds 60928-60999; the next block keeps its alignment.
    expect(blocks[17]).toEqual({ first: 32512, last: 32767 });
    expect(blocks.at(-1)).toEqual({ first: 1024, last: 1279 });
    for (const block of blocks) {
      expect(block.last < EPHEMERAL.first || block.first > EPHEMERAL.last).toBe(true);
    }
  });

  test('skipped blocks do not shift their neighbours', () => {
    const all = firsts(usableBlocks(FULL, [], 1024));
    const some = firsts(usableBlocks(FULL, [{ first: 50000, last: 50000 }], 1024));
    expect(some).toEqual(all.filter((first) => first > 50000 || first + 1023 < 50000));
  });

  test.each([0, -256, 1.5, Number.NaN])('refuses a block size of %p', (size) => {
    expect(() => usableBlocks(FULL, [], size)).toThrow(RangeError);
  });
});

describe('BlockLayout', () => {
  const layout = new BlockLayout(FULL, [EPHEMERAL], 256);

  test.each([
    // port, block index
    [65535, 0],
    [65280, 0],
    [65279, 1],
    [61184, 16],
    [61183, -1],
    [45000, -1],
    [32767, 17],
    [1024, 140],
    [1023, -1],
    [0, -1],
    [65536, -1],
    [40000.5, -1],
  ])('port %p lies in block %p', (port, index) => {
    expect(layout.indexOfPort(port)).toBe(index);
  });

  test.each([
    [65280, 0],
    [65281, -1],
    [32512, 17],
    [60928, -1],
    [1024, 140],
  ])('first port %p starts block %p', (port, index) => {
    expect(layout.indexOfFirstPort(port)).toBe(index);
  });

  test('indexOfPort agrees with the blocks for every port', () => {
    const disagreements: number[] = [];
    for (let port = 0; port <= 65536; port++) {
      const expected = layout.blocks.findIndex(
        (block) => block.first <= port && port <= block.last,
      );
      if (layout.indexOfPort(port) !== expected) disagreements.push(port);
    }
    expect(disagreements).toEqual([]);
  });
});
