/**
 * Ruleset text written byte by byte into one reused buffer and turned into strings a few
 * megabytes at a time. A /12 is over two million rule lines: built as template strings and
 * joined, their pieces and copies keep the garbage collector busier than the writing itself,
 * and the whole text existed several times over (issue 13). Here each chunk is one string;
 * a line that must be kept on its own (a chain's rules) is a slice of its chunk, which V8
 * stores as a reference into the chunk, not as a copy.
 */

/** Large enough that a /12 is a few dozen chunks, small enough to be a cheap scratch buffer. */
const CHUNK_BYTES = 4 << 20;
const NEWLINE = 10;
const DOT = 46;
const ZERO = 48;

/**
 * `text` as bytes, one per character: latin1 round-trips through toString('latin1'). Called
 * for every chain, so a plain loop into a small array rather than a Buffer from its pool.
 */
export function encodeText(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code > 255) {
      throw new RangeError(`ruleset text must be 8-bit characters: ${JSON.stringify(text)}`);
    }
    bytes[i] = code;
  }
  return bytes;
}

export class LineWriter {
  private readonly buffer: Buffer;
  /** Where a new line may still start: past it, the line is flushed first. */
  private readonly flushAt: number;
  private length = 0;
  private lineStart = 0;
  private readonly chunks: string[] = [];
  /** Characters in `chunks` (one per byte: the text is latin1). */
  private flushed = 0;
  /** Where each line of the current chunk ends (its newline). */
  private lineEnds = new Int32Array(1024);
  private lines = 0;
  /**
   * The lines of the current chunk that are wanted as strings, as runs of lines for one
   * owner (a chain's lines come together): owner, and the number of its first line.
   */
  private readonly runOwners: (string[] | undefined)[] = [];
  private readonly runStarts: number[] = [];

  /**
   * `expectedBytes` sizes the buffer for a small text; `longestLine` bounds a line, which must
   * fit in the buffer whole because a line is never split between chunks.
   */
  constructor(expectedBytes: number, longestLine: number) {
    this.flushAt = Math.max(1, Math.min(CHUNK_BYTES, expectedBytes));
    // Room for a line and its repetition (endLineTwice) past the point of flushing.
    this.buffer = Buffer.allocUnsafeSlow(this.flushAt + 2 * longestLine);
  }

  private overflow(): never {
    throw new RangeError(
      `a ruleset line is longer than the ${(this.buffer.length - this.flushAt) / 2} bytes allowed for it`,
    );
  }

  bytes(bytes: Uint8Array): void {
    const { buffer, length } = this;
    const count = bytes.length;
    if (length + count > buffer.length) this.overflow();
    // A native copy pays off from about ten bytes; below, a plain loop is faster.
    if (count > 8) buffer.set(bytes, length);
    else for (let i = 0; i < count; i++) buffer[length + i] = bytes[i] ?? 0;
    this.length = length + count;
  }

  /** A whole number >= 0 in decimal. */
  decimal(value: number): void {
    let digits = 1;
    for (let rest = value; rest >= 10; rest = Math.floor(rest / 10)) digits++;
    let at = this.length + digits;
    if (at > this.buffer.length) this.overflow();
    this.length = at;
    let rest = value;
    do {
      this.buffer[--at] = ZERO + (rest % 10);
      rest = Math.floor(rest / 10);
    } while (rest > 0);
  }

  /** A uint32 as a dotted quad, as formatIpv4 writes it. */
  ipv4(address: number): void {
    const { buffer } = this;
    let at = this.length;
    if (at + 15 > buffer.length) this.overflow();
    for (let shift = 24; shift >= 0; shift -= 8) {
      const octet = (address >>> shift) & 255;
      if (octet >= 100) buffer[at++] = ZERO + Math.floor(octet / 100);
      if (octet >= 10) buffer[at++] = ZERO + (Math.floor(octet / 10) % 10);
      buffer[at++] = ZERO + (octet % 10);
      if (shift > 0) buffer[at++] = DOT;
    }
    this.length = at;
  }

  byte(value: number): void {
    if (this.length >= this.buffer.length) this.overflow();
    this.buffer[this.length++] = value;
  }

  /** How many characters have been written so far, in all. */
  get offset(): number {
    return this.flushed + this.length;
  }

  /**
   * Appends ready text of whole lines (each ending in a newline) as it is: the text of chains
   * an earlier render wrote and this one reuses. Not copied into the buffer: its own piece.
   */
  text(piece: string): void {
    if (this.length !== this.lineStart) throw new RangeError('text() inside a line');
    if (piece.length === 0) return;
    this.flush();
    this.chunks.push(piece);
    this.flushed += piece.length;
  }

  /** How many bytes the current line holds so far. */
  get column(): number {
    return this.length - this.lineStart;
  }

  /** Ends the line; `owner`, when given, receives it (without the newline) as a string. */
  endLine(owner?: string[]): void {
    this.closeLine(owner);
    if (this.length >= this.flushAt) this.flush();
  }

  /**
   * Ends the line, then writes it once more with `patch` over its bytes from `at` (a column)
   * and ends that too: the udp rule of a client is its tcp rule with `udp` for `tcp`.
   */
  endLineTwice(owner: string[] | undefined, at: number, patch: Uint8Array): void {
    const start = this.lineStart;
    const end = this.length;
    if (at < 0 || at + patch.length > end - start) {
      throw new RangeError(`a patch at column ${at} lies outside the line`);
    }
    this.closeLine(owner);
    if (this.length + end - start > this.buffer.length) this.overflow();
    this.buffer.copyWithin(this.length, start, end);
    this.buffer.set(patch, this.length + at);
    this.length += end - start;
    this.closeLine(owner);
    if (this.length >= this.flushAt) this.flush();
  }

  private closeLine(owner: string[] | undefined): void {
    if (this.runOwners.at(-1) !== owner) {
      this.runOwners.push(owner);
      this.runStarts.push(this.lines);
    }
    if (this.lines === this.lineEnds.length) {
      const grown = new Int32Array(this.lines * 2);
      grown.set(this.lineEnds);
      this.lineEnds = grown;
    }
    this.lineEnds[this.lines++] = this.length;
    this.byte(NEWLINE);
    this.lineStart = this.length;
  }

  private flush(): void {
    if (this.length === 0) return;
    const chunk = this.buffer.toString('latin1', 0, this.length);
    this.chunks.push(chunk);
    this.flushed += chunk.length;
    const { runOwners, runStarts, lineEnds } = this;
    for (let run = 0; run < runOwners.length; run++) {
      const owner = runOwners[run];
      if (!owner) continue;
      const end = runStarts[run + 1] ?? this.lines;
      let line = runStarts[run] ?? 0;
      let start = line === 0 ? 0 : (lineEnds[line - 1] ?? 0) + 1;
      for (; line < end; line++) {
        const lineEnd = lineEnds[line] ?? 0;
        owner.push(chunk.slice(start, lineEnd));
        start = lineEnd + 1;
      }
    }
    runOwners.length = 0;
    runStarts.length = 0;
    this.lines = 0;
    this.length = 0;
    this.lineStart = 0;
  }

  /**
   * Everything written, as one string. Not joined: a concatenation of the chunks, which V8
   * copies into one piece only if and when a reader needs it flat.
   */
  finish(): string {
    let text = '';
    for (const chunk of this.finishPieces()) text += chunk;
    return text;
  }

  /** Everything written, as the pieces whose concatenation is the text (each one flat). */
  finishPieces(): readonly string[] {
    this.flush();
    return this.chunks;
  }
}
