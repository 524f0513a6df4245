/**
 * Reading typed values out of a parsed PHP tree. Each `expect*` either returns the value or
 * throws one sentence naming the file, line and column, what the value should be and what it is.
 */
import { TnatError } from '../errors.js';
import type { PhpArrayEntry, PhpValue, Position } from './php-value.js';

/** The value stored under `key` (PHP key rules: `'5'` and `5` are the same key). */
export function getEntry(array: PhpValue, key: string | number): PhpValue | undefined {
  if (array.kind !== 'array') return undefined;
  const wanted = typeof key === 'string' && /^(0|-?[1-9][0-9]*)$/.test(key) ? Number(key) : key;
  for (let i = array.entries.length - 1; i >= 0; i--) {
    const entry = array.entries[i];
    if (entry?.key === wanted) return entry.value;
  }
  return undefined;
}

/** `example` completes "must be a string like ..." when given. */
export function expectString(
  value: PhpValue,
  file: string,
  what: string,
  example?: string,
): string {
  if (value.kind === 'string') return value.value;
  return mismatch(
    value,
    file,
    what,
    example === undefined ? 'a string' : `a string like ${quote(example)}`,
  );
}

export function expectInt(value: PhpValue, file: string, what: string): number {
  if (value.kind === 'int') return value.value;
  return mismatch(value, file, what, 'an integer');
}

export function expectBool(value: PhpValue, file: string, what: string): boolean {
  if (value.kind === 'bool') return value.value;
  return mismatch(value, file, what, 'true or false');
}

export function expectArray(value: PhpValue, file: string, what: string): readonly PhpArrayEntry[] {
  if (value.kind === 'array') return value.entries;
  return mismatch(value, file, what, 'an array');
}

/** A string, or an array of strings (eduVPN's multi-node form); a string is a list of one. */
export function expectStringOrList(
  value: PhpValue,
  file: string,
  what: string,
  example?: string,
): { value: string; pos: Position }[] {
  const like = example === undefined ? '' : ` like ${quote(example)}`;
  if (value.kind === 'string') return [{ value: value.value, pos: value.pos }];
  if (value.kind !== 'array')
    return mismatch(value, file, what, `a string${like} or a list of strings`);
  return value.entries.map((entry) => {
    if (entry.value.kind === 'string') return { value: entry.value.value, pos: entry.value.pos };
    const entryName = `entry ${typeof entry.key === 'number' ? entry.key : quote(entry.key)} of ${what}`;
    return mismatch(entry.value, file, entryName, `a string${like}`);
  });
}

function mismatch(value: PhpValue, file: string, what: string, expectation: string): never {
  throw new TnatError('E_SOURCE', `${what} must be ${expectation}, but it is ${describe(value)}`, {
    where: { file, line: value.pos.line, column: value.pos.column },
  });
}

function describe(value: PhpValue): string {
  switch (value.kind) {
    case 'string':
      return `the string ${quote(value.value)}`;
    case 'int':
      return `the integer ${value.value}`;
    case 'float':
      return `the float ${value.value}`;
    case 'bool':
      return value.value ? 'true' : 'false';
    case 'null':
      return 'null';
    case 'array':
      return value.entries.length === 0 ? 'an empty array' : 'an array';
    case 'opaque':
      return `the expression ${shorten(value.text)}, which traceable-nat does not evaluate: write the value literally`;
  }
}

function quote(text: string): string {
  return `'${shorten(text).replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`;
}

function shorten(text: string): string {
  const oneLine = text.replace(/\s+/g, ' ');
  return oneLine.length > 60 ? `${oneLine.slice(0, 57)}...` : oneLine;
}
