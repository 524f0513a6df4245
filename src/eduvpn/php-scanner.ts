/**
 * The character-level half of the PHP literal reader: positions, comments and whitespace,
 * identifiers, numbers and single-quoted strings. It never evaluates anything.
 */
import { TnatError } from '../errors.js';
import type { Position } from './php-value.js';

/** Deep enough for any real configuration, shallow enough that recursion can never overflow. */
export const MAX_NESTING = 64;

export const HALF_WRITTEN = 'it may be half-written: wait for the write to finish or fix the file';

const INT64_MAX = 2n ** 63n - 1n;

/** A literal number as PHP reads it; `unsafe` is an int JavaScript cannot hold exactly. */
export type PhpNumber =
  { readonly kind: 'int' | 'float'; readonly value: number } | { readonly kind: 'unsafe' };

export function isDigit(code: number): boolean {
  return code >= 48 && code <= 57;
}

/** PHP identifiers are [a-zA-Z_\x80-\xff][a-zA-Z0-9_\x80-\xff]*, bytes >= 0x80 included. */
export function isIdentifierStart(code: number): boolean {
  return (code >= 97 && code <= 122) || (code >= 65 && code <= 90) || code === 95 || code >= 128;
}

function isIdentifierPart(code: number): boolean {
  return isIdentifierStart(code) || isDigit(code);
}

/** No-break and other Unicode spaces: pasted from documents, invisible, and not PHP whitespace. */
function isUnicodeSpace(code: number): boolean {
  return code === 0xa0 || code === 0xfeff || code === 0x3000 || (code >= 0x2000 && code <= 0x200b);
}

function isHexDigit(code: number): boolean {
  return isDigit(code) || (code >= 97 && code <= 102) || (code >= 65 && code <= 70);
}

function isOctalDigit(code: number): boolean {
  return code >= 48 && code <= 55;
}

function isBinaryDigit(code: number): boolean {
  return code === 48 || code === 49;
}

export class PhpScanner {
  readonly text: string;
  readonly file: string;
  offset = 0;
  private readonly lineStarts: number[];
  /** Offsets of the second halves of surrogate pairs, so columns count characters. */
  private readonly pairTails: number[];

  constructor(text: string, file: string) {
    this.text = text;
    this.file = file;
    this.lineStarts = [text.startsWith('\uFEFF') ? 1 : 0];
    this.pairTails = [];
    for (let i = 0; i < text.length; i++) {
      const code = text.charCodeAt(i);
      if (code === 10) this.lineStarts.push(i + 1);
      else if (code === 13 && text.charCodeAt(i + 1) !== 10) this.lineStarts.push(i + 1);
      else if (code >= 0xdc00 && code <= 0xdfff && i > 0) {
        const before = text.charCodeAt(i - 1);
        if (before >= 0xd800 && before <= 0xdbff) this.pairTails.push(i);
      }
    }
  }

  position(offset: number): Position {
    const line = Math.max(1, upperBound(this.lineStarts, offset));
    const lineStart = this.lineStarts[line - 1] ?? 0;
    const pairs =
      upperBound(this.pairTails, offset - 1) - upperBound(this.pairTails, lineStart - 1);
    return { line, column: Math.max(1, offset - lineStart - pairs + 1) };
  }

  fail(offset: number, sentence: string): never {
    return this.failAt(this.position(offset), sentence);
  }

  failAt(pos: Position, sentence: string): never {
    const where = { file: this.file, line: pos.line, column: pos.column };
    throw new TnatError('E_SOURCE', sentence, { where });
  }

  /** Fails at the end of the file, naming what was left open and where it opened. */
  failAtEnd(what: string, openedAt: number): never {
    const { line, column } = this.position(openedAt);
    this.fail(
      this.text.length,
      `the file ends inside ${what} that opens at line ${line}, column ${column}; ${HALF_WRITTEN}`,
    );
  }

  atEnd(): boolean {
    return this.offset >= this.text.length;
  }

  code(ahead = 0): number {
    return this.text.charCodeAt(this.offset + ahead);
  }

  startsWith(fragment: string): boolean {
    return this.text.startsWith(fragment, this.offset);
  }

  /** What sits at `offset`, for "found ..." in messages. */
  describe(offset: number): string {
    const code = this.text.charCodeAt(offset);
    if (offset >= this.text.length) return 'the end of the file';
    if (code < 32 || code === 127 || isUnicodeSpace(code)) {
      const name = isUnicodeSpace(code) ? 'the character' : 'the control character';
      return `${name} U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
    }
    if (isIdentifierStart(code)) {
      const word = this.text.slice(offset, this.identifierEnd(offset));
      return `\`${word.length > 40 ? `${word.slice(0, 40)}...` : word}\``;
    }
    if (code === 39 || code === 34) return 'a string';
    if (isDigit(code)) return 'a number';
    if (this.text.startsWith('=>', offset) || this.text.startsWith('?>', offset)) {
      return `\`${this.text.slice(offset, offset + 2)}\``;
    }
    return `\`${String.fromCodePoint(this.text.codePointAt(offset) ?? code)}\``;
  }

  /** Skips whitespace and comments. `#[` opens a PHP attribute, not a comment. */
  skipTrivia(): void {
    const text = this.text;
    for (;;) {
      const code = text.charCodeAt(this.offset);
      if (code === 32 || code === 9 || code === 10 || code === 13) {
        this.offset++;
      } else if (code === 35 && text.charCodeAt(this.offset + 1) !== 91) {
        this.skipLineComment();
      } else if (code === 47 && text.charCodeAt(this.offset + 1) === 47) {
        this.skipLineComment();
      } else if (code === 47 && text.charCodeAt(this.offset + 1) === 42) {
        const end = text.indexOf('*/', this.offset + 2);
        if (end < 0) this.failAtEnd('the comment', this.offset);
        this.offset = end + 2;
      } else {
        if (isUnicodeSpace(code)) {
          this.fail(
            this.offset,
            `found ${this.describe(this.offset)}, a space PHP does not accept between tokens: replace it by a normal space`,
          );
        }
        return;
      }
    }
  }

  /** A line comment ends at the line end or just before `?>`, as in PHP. */
  private skipLineComment(): void {
    const text = this.text;
    let i = this.offset;
    for (; i < text.length; i++) {
      const code = text.charCodeAt(i);
      if (code === 10 || code === 13) break;
      if (code === 63 && text.charCodeAt(i + 1) === 62) break;
    }
    this.offset = i;
  }

  identifierEnd(offset: number): number {
    let i = offset;
    while (i < this.text.length && isIdentifierPart(this.text.charCodeAt(i))) i++;
    return i;
  }

  /** Reads an identifier if one starts here. */
  readIdentifier(): string | undefined {
    if (!isIdentifierStart(this.code())) return undefined;
    const start = this.offset;
    this.offset = this.identifierEnd(start);
    return this.text.slice(start, this.offset);
  }

  /** A single-quoted string: only `\\` and `\'` are escapes. */
  readSingleQuoted(): string {
    const text = this.text;
    const start = this.offset;
    let value = '';
    let segment = start + 1;
    for (let i = segment; i < text.length; i++) {
      const code = text.charCodeAt(i);
      if (code === 39) {
        this.offset = i + 1;
        return value + text.slice(segment, i);
      }
      if (code === 92) {
        const next = text.charCodeAt(i + 1);
        if (next === 39 || next === 92) {
          value += text.slice(segment, i) + text.charAt(i + 1);
          i++;
          segment = i + 1;
        }
      }
    }
    return this.failAtEnd('the string', start);
  }

  /**
   * Reads an int or float literal (the caller saw a digit, or `.` and a digit). Follows PHP's
   * lexer: `_` only between digits, a leading 0 means octal, ints beyond 64 bits become floats.
   */
  readNumber(): PhpNumber {
    const text = this.text;
    const start = this.offset;
    const prefix = text.charCodeAt(start + 1) | 32;
    if (text.charCodeAt(start) === 48 && (prefix === 120 || prefix === 98 || prefix === 111)) {
      const isBaseDigit =
        prefix === 120 ? isHexDigit : prefix === 98 ? isBinaryDigit : isOctalDigit;
      const end = digitRunEnd(text, start + 2, isBaseDigit);
      if (end > start + 2) {
        this.offset = end;
        const base = prefix === 120 ? '0x' : prefix === 98 ? '0b' : '0o';
        return intFromDigits(base, text.slice(start + 2, end).replaceAll('_', ''));
      }
    }
    let end = digitRunEnd(text, start, isDigit);
    let isFloat = false;
    if (text.charCodeAt(end) === 46 && (end > start || isDigit(text.charCodeAt(end + 1)))) {
      isFloat = true;
      end = digitRunEnd(text, end + 1, isDigit);
    }
    if ((text.charCodeAt(end) | 32) === 101) {
      const sign = text.charCodeAt(end + 1);
      const digits = sign === 43 || sign === 45 ? end + 2 : end + 1;
      if (isDigit(text.charCodeAt(digits))) {
        isFloat = true;
        end = digitRunEnd(text, digits, isDigit);
      }
    }
    this.offset = end;
    const literal = text.slice(start, end).replaceAll('_', '');
    if (isFloat) return { kind: 'float', value: Number(literal) };
    if (literal.length > 1 && literal.startsWith('0')) {
      if (!/^[0-7]+$/.test(literal)) {
        this.fail(
          start,
          `\`${text.slice(start, end)}\` is not a valid PHP number: a leading 0 makes it octal, which has no digits 8 or 9`,
        );
      }
      return intFromDigits('0o', literal.slice(1));
    }
    if (literal.length < 16) return { kind: 'int', value: Number(literal) };
    return intFromDigits('', literal);
  }
}

/** The end of `digit (_? digit)*` starting at `offset`; `offset` itself when there is no digit. */
function digitRunEnd(text: string, offset: number, isBaseDigit: (code: number) => boolean): number {
  let i = offset;
  if (!isBaseDigit(text.charCodeAt(i))) return i;
  for (;;) {
    if (isBaseDigit(text.charCodeAt(i + 1))) i++;
    else if (text.charCodeAt(i + 1) === 95 && isBaseDigit(text.charCodeAt(i + 2))) i += 2;
    else return i + 1;
  }
}

/** Digits so long they exceed 64 bits whatever they are; BigInt would parse them slowly. */
const MAX_INT64_DIGITS: Readonly<Record<string, number>> = { '0x': 16, '0o': 22, '0b': 64, '': 19 };

function intFromDigits(prefix: '0x' | '0o' | '0b' | '', digits: string): PhpNumber {
  const significant = digits.replace(/^0+(?=.)/, '');
  if (significant.length > (MAX_INT64_DIGITS[prefix] ?? 0)) {
    return { kind: 'float', value: Number(prefix + significant) };
  }
  const value = BigInt(prefix + significant);
  if (value > INT64_MAX) return { kind: 'float', value: Number(value) };
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) return { kind: 'unsafe' };
  return { kind: 'int', value: Number(value) };
}

/** How many sorted `values` are <= `target`. */
function upperBound(values: readonly number[], target: number): number {
  let low = 0;
  let high = values.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if ((values[middle] ?? 0) <= target) low = middle + 1;
    else high = middle;
  }
  return low;
}
