/**
 * The port blocks of one public address. Blocks are aligned downwards from the top of the range,
 * as in the original tool (the first client gets 65280-65535), so a block's position follows from
 * a port by arithmetic and an excluded port only removes the blocks that hold it.
 */
import type { PortBlock } from './types.js';

function assertBlockSize(blockSize: number): void {
  if (!Number.isInteger(blockSize) || blockSize < 1) {
    throw new RangeError(`a port block holds a whole number of ports >= 1, not ${blockSize}`);
  }
}

/** How many aligned positions fit in the range, usable or not. */
function positionCount(range: PortBlock, blockSize: number): number {
  return range.last >= range.first ? Math.floor((range.last - range.first + 1) / blockSize) : 0;
}

function holdsExcludedPort(first: number, last: number, exclude: readonly PortBlock[]): boolean {
  return exclude.some((excluded) => excluded.first <= last && excluded.last >= first);
}

/** The usable blocks of one public address in hand-out order: top of the range first. */
export function usableBlocks(
  range: PortBlock,
  exclude: readonly PortBlock[],
  blockSize: number,
): PortBlock[] {
  assertBlockSize(blockSize);
  const blocks: PortBlock[] = [];
  const positions = positionCount(range, blockSize);
  for (let position = 0; position < positions; position++) {
    const last = range.last - position * blockSize;
    const first = last - blockSize + 1;
    if (!holdsExcludedPort(first, last, exclude)) blocks.push({ first, last });
  }
  return blocks;
}

/**
 * The usable blocks plus a table from aligned position to block index, so that a port or a
 * block's first port leads to its block without a search, skipped blocks included.
 */
export class BlockLayout {
  readonly blockSize: number;
  readonly range: PortBlock;
  readonly blocks: readonly PortBlock[];
  /** aligned position (0 = top) -> index in `blocks`, or -1 for a skipped position */
  private readonly indexByPosition: Int32Array;

  constructor(range: PortBlock, exclude: readonly PortBlock[], blockSize: number) {
    this.blockSize = blockSize;
    this.range = range;
    this.blocks = Object.freeze(usableBlocks(range, exclude, blockSize));
    this.indexByPosition = new Int32Array(positionCount(range, blockSize)).fill(-1);
    this.blocks.forEach((block, index) => {
      this.indexByPosition[(range.last - block.last) / blockSize] = index;
    });
  }

  /** The index of the usable block that holds `port`, or -1. */
  indexOfPort(port: number): number {
    if (!Number.isInteger(port) || port < this.range.first || port > this.range.last) return -1;
    return this.indexByPosition[Math.floor((this.range.last - port) / this.blockSize)] ?? -1;
  }

  /** The index of the usable block that starts at `firstPort`, or -1. */
  indexOfFirstPort(firstPort: number): number {
    const index = this.indexOfPort(firstPort);
    return index >= 0 && this.blocks[index]?.first === firstPort ? index : -1;
  }
}
