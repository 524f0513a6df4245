/**
 * The value half of the PHP literal reader: literals become a tree with positions, and any
 * other expression is stepped over and kept as its source text.
 */
import { readInterpolated, skipCode } from './php-expression.js';
import { HALF_WRITTEN, MAX_NESTING, isDigit, isIdentifierStart } from './php-scanner.js';
import type { PhpScanner } from './php-scanner.js';
import type { PhpArrayEntry, PhpValue } from './php-value.js';

/** Where a value sits: what may end it and what to name when something else follows it. */
export interface ValueContext {
  readonly stopAtArrow: boolean;
  readonly expected: string;
}

export const RETURN_CONTEXT: ValueContext = { stopAtArrow: false, expected: '`;`' };
const PARENTHESIS_CONTEXT: ValueContext = { stopAtArrow: false, expected: '`)`' };
const ENTRY_CONTEXTS: Readonly<Record<number, { key: ValueContext; value: ValueContext }>> = {
  93: {
    key: { stopAtArrow: true, expected: '`=>`, `,` or `]`' },
    value: { stopAtArrow: false, expected: '`,` or `]`' },
  },
  41: {
    key: { stopAtArrow: true, expected: '`=>`, `,` or `)`' },
    value: { stopAtArrow: false, expected: '`,` or `)`' },
  },
};

const WORD_OPERATORS = new Set(['and', 'or', 'xor', 'instanceof']);

/** A literal where one can be read; otherwise the whole expression as opaque source text. */
export function parseValue(scanner: PhpScanner, depth: number, context: ValueContext): PhpValue {
  scanner.skipTrivia();
  const start = scanner.offset;
  if (atStop(scanner, context.stopAtArrow)) {
    if (scanner.atEnd())
      scanner.fail(start, `expected a value, but the file ends; ${HALF_WRITTEN}`);
    scanner.fail(start, `expected a value, found ${scanner.describe(start)}`);
  }
  const literal = readLiteral(scanner, depth);
  if (literal !== undefined) {
    scanner.skipTrivia();
    if (atStop(scanner, context.stopAtArrow)) return literal;
    if (!continuesExpression(scanner)) {
      const { line, column } = literal.pos;
      scanner.fail(
        scanner.offset,
        `expected ${context.expected} after the value at line ${line}, column ${column}, found ${scanner.describe(scanner.offset)}`,
      );
    }
  }
  scanner.offset = start;
  const end = skipCode(scanner, depth, context.stopAtArrow ? 'key' : 'value');
  return { kind: 'opaque', text: scanner.text.slice(start, end), pos: scanner.position(start) };
}

function atStop(scanner: PhpScanner, stopAtArrow: boolean): boolean {
  const code = scanner.code();
  if (scanner.atEnd() || code === 44 || code === 59 || code === 41 || code === 93 || code === 125) {
    return true;
  }
  return scanner.startsWith('?>') || (stopAtArrow && scanner.startsWith('=>'));
}

/** After a literal: an operator means the literal is only the start of a larger expression. */
function continuesExpression(scanner: PhpScanner): boolean {
  if (scanner.startsWith('=>')) return false;
  if ('.+-*/%&|^<>=!?:[('.includes(scanner.text.charAt(scanner.offset))) return true;
  const at = scanner.offset;
  const word = scanner.readIdentifier();
  scanner.offset = at;
  return word !== undefined && WORD_OPERATORS.has(word.toLowerCase());
}

/** Reads a literal starting here, or returns undefined when the expression is not one. */
function readLiteral(scanner: PhpScanner, depth: number): PhpValue | undefined {
  const start = scanner.offset;
  const pos = scanner.position(start);
  const code = scanner.code();
  if (code === 91) return readArray(scanner, depth, start);
  if (code === 39) return { kind: 'string', value: scanner.readSingleQuoted(), pos };
  if (code === 34) {
    const value = readInterpolated(scanner, depth);
    return value === undefined ? undefined : { kind: 'string', value, pos };
  }
  if (isDigit(code) || code === 46 || code === 43 || code === 45)
    return readSignedNumber(scanner, pos);
  if (code === 40) {
    if (depth >= MAX_NESTING) return undefined;
    scanner.offset++;
    const inner = parseValue(scanner, depth + 1, PARENTHESIS_CONTEXT);
    scanner.skipTrivia();
    if (scanner.code() !== 41 || inner.kind === 'opaque') return undefined;
    scanner.offset++;
    return inner;
  }
  if (!isIdentifierStart(code)) return undefined;
  const word = scanner.readIdentifier()?.toLowerCase();
  if (word === 'true' || word === 'false') return { kind: 'bool', value: word === 'true', pos };
  if (word === 'null') return { kind: 'null', pos };
  if (word !== 'array') return undefined;
  scanner.skipTrivia();
  return scanner.code() === 40 ? readArray(scanner, depth, start) : undefined;
}

/** Numbers with any run of unary signs (`-1`, `- +0x10`); `--1` is a decrement, not a literal. */
function readSignedNumber(scanner: PhpScanner, pos: PhpValue['pos']): PhpValue | undefined {
  let negative = false;
  for (;;) {
    const code = scanner.code();
    if (code !== 43 && code !== 45) break;
    if (scanner.code(1) === code) return undefined;
    negative = negative !== (code === 45);
    scanner.offset++;
    scanner.skipTrivia();
  }
  const code = scanner.code();
  if (!isDigit(code) && !(code === 46 && isDigit(scanner.code(1)))) return undefined;
  const number = scanner.readNumber();
  if (number.kind === 'unsafe') return undefined;
  if (number.kind === 'float')
    return { kind: 'float', value: negative ? -number.value : number.value, pos };
  return { kind: 'int', value: negative && number.value !== 0 ? -number.value : number.value, pos };
}

/** `[...]` or `array(...)`; the scanner sits on `[` or on the `(` after `array`. */
function readArray(scanner: PhpScanner, depth: number, start: number): PhpValue {
  if (depth >= MAX_NESTING) {
    scanner.fail(
      start,
      `the arrays nest deeper than ${MAX_NESTING} levels, which traceable-nat refuses`,
    );
  }
  const closer = scanner.code() === 91 ? 93 : 41;
  const contexts = ENTRY_CONTEXTS[closer] ?? { key: RETURN_CONTEXT, value: RETURN_CONTEXT };
  scanner.offset++;
  const entries: PhpArrayEntry[] = [];
  const indexOfKey = new Map<string | number, number>();
  // PHP 8.3 semantics: the next implicit key is one past the largest int key, 0 when none.
  let nextKey: number | undefined;
  for (;;) {
    scanner.skipTrivia();
    if (scanner.atEnd()) scanner.failAtEnd('the array', start);
    if (scanner.code() === closer) break;
    const first = parseValue(scanner, depth + 1, contexts.key);
    scanner.skipTrivia();
    let key: string | number;
    let value = first;
    if (scanner.startsWith('=>')) {
      scanner.offset += 2;
      scanner.skipTrivia();
      if (scanner.atEnd()) scanner.failAtEnd('the array', start);
      value = parseValue(scanner, depth + 1, contexts.value);
      key = toKey(scanner, first);
    } else {
      key = nextKey ?? 0;
    }
    if (typeof key === 'number' && (nextKey === undefined || key >= nextKey)) nextKey = key + 1;
    // A repeated key replaces the earlier value but keeps its place, as in PHP.
    const entry: PhpArrayEntry = { key, value, pos: first.pos };
    const existing = indexOfKey.get(key);
    if (existing === undefined) {
      indexOfKey.set(key, entries.length);
      entries.push(entry);
    } else {
      entries[existing] = entry;
    }
    scanner.skipTrivia();
    if (scanner.atEnd()) scanner.failAtEnd('the array', start);
    if (scanner.code() === closer) break;
    if (scanner.code() !== 44) {
      scanner.fail(
        scanner.offset,
        `expected \`,\` or \`${String.fromCharCode(closer)}\` after the array entry, found ${scanner.describe(scanner.offset)}`,
      );
    }
    scanner.offset++;
  }
  scanner.offset++;
  return { kind: 'array', entries, pos: scanner.position(start) };
}

/** The key PHP stores: decimal-int strings become ints, bools 0/1, null '', floats truncate. */
function toKey(scanner: PhpScanner, value: PhpValue): string | number {
  switch (value.kind) {
    case 'string': {
      if (!/^(0|-?[1-9][0-9]*)$/.test(value.value)) return value.value;
      const number = Number(value.value);
      return Number.isSafeInteger(number) ? number : value.value;
    }
    case 'int':
      return value.value;
    case 'float': {
      const truncated = Math.trunc(value.value);
      if (!Number.isSafeInteger(truncated)) {
        return scanner.failAt(
          value.pos,
          'this array key is a float beyond the integer range; write an int or a string key',
        );
      }
      return truncated === 0 ? 0 : truncated;
    }
    case 'bool':
      return value.value ? 1 : 0;
    case 'null':
      return '';
    case 'opaque':
      return value.text;
    case 'array':
      return scanner.failAt(value.pos, 'an array cannot be an array key; PHP refuses it too');
  }
}
