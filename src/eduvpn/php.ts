/**
 * Reads the value an eduVPN config.php returns, without ever running PHP: the literal subset
 * (arrays, strings, numbers, true/false/null) becomes a tree with positions; any other
 * expression (a constant, `__DIR__ . '/x'`, a call) is kept as opaque source text so files
 * that use them for unrelated keys still read.
 */
import { skipCode } from './php-expression.js';
import { RETURN_CONTEXT, parseValue } from './php-literal.js';
import { HALF_WRITTEN, PhpScanner } from './php-scanner.js';
import type { PhpValue } from './php-value.js';

export {
  expectArray,
  expectBool,
  expectInt,
  expectString,
  expectStringOrList,
  getEntry,
} from './php-access.js';

/** Statements that may precede `return` and do not change what a literal means. */
const SKIPPED_STATEMENTS = new Set([
  'declare',
  'namespace',
  'use',
  'define',
  'const',
  'require',
  'require_once',
  'include',
  'include_once',
]);
/** Parses the file's top-level `return <expr>;` and returns that expression's value tree. */
export function parsePhpConfig(text: string, file: string): PhpValue {
  const scanner = new PhpScanner(text, file);
  readOpenTag(scanner);
  skipToReturn(scanner);
  const value = parseValue(scanner, 0, RETURN_CONTEXT);
  readEnd(scanner);
  return value;
}

function readOpenTag(scanner: PhpScanner): void {
  const text = scanner.text;
  if (text.startsWith('\uFEFF')) scanner.offset = 1;
  while (/[ \t\r\n]/.test(text.charAt(scanner.offset))) scanner.offset++;
  if (scanner.atEnd()) scanner.fail(0, `the file is empty; ${HALF_WRITTEN}`);
  const after = text.charAt(scanner.offset + 5);
  if (
    text.slice(scanner.offset, scanner.offset + 5).toLowerCase() !== '<?php' ||
    /[^ \t\r\n]/.test(after)
  ) {
    scanner.fail(
      scanner.offset,
      `expected the file to start with \`<?php\`, found ${scanner.describe(scanner.offset)}; is this the eduVPN PHP configuration file?`,
    );
  }
  scanner.offset += 5;
}

function skipToReturn(scanner: PhpScanner): void {
  for (;;) {
    scanner.skipTrivia();
    const at = scanner.offset;
    if (scanner.atEnd())
      scanner.fail(at, `the file ends before its \`return\` statement; ${HALF_WRITTEN}`);
    const word = scanner.readIdentifier()?.toLowerCase();
    if (word === 'return') return;
    if (word === undefined || !SKIPPED_STATEMENTS.has(word)) {
      scanner.fail(
        at,
        `expected a \`return [...];\` statement, found ${scanner.describe(at)}; traceable-nat reads only files that return a literal array and never runs PHP code`,
      );
    }
    for (;;) {
      skipCode(scanner, 0, 'statement');
      if (scanner.code() !== 44) break;
      scanner.offset++;
    }
    if (scanner.atEnd()) scanner.failAtEnd(`the \`${word}\` statement`, at);
    if (scanner.code() !== 59) {
      scanner.fail(
        scanner.offset,
        `expected \`;\` to end the \`${word}\` statement, found ${scanner.describe(scanner.offset)}`,
      );
    }
    scanner.offset++;
  }
}

function readEnd(scanner: PhpScanner): void {
  scanner.skipTrivia();
  if (scanner.atEnd()) {
    scanner.fail(
      scanner.offset,
      `expected \`;\` after the returned value, but the file ends; ${HALF_WRITTEN}`,
    );
  }
  // `?>` ends a statement in PHP, so `return [...] ?>` needs no semicolon.
  if (scanner.code() === 59) {
    scanner.offset++;
    scanner.skipTrivia();
  } else if (!scanner.startsWith('?>')) {
    scanner.fail(
      scanner.offset,
      `expected \`;\` after the returned value, found ${scanner.describe(scanner.offset)}`,
    );
  }
  if (scanner.startsWith('?>')) {
    scanner.offset += 2;
    const rest = /[^ \t\r\n]/.exec(scanner.text.slice(scanner.offset));
    if (rest !== null) {
      scanner.fail(
        scanner.offset + rest.index,
        'expected nothing after the closing `?>`, found text that PHP would print: remove it',
      );
    }
  } else if (!scanner.atEnd()) {
    scanner.fail(
      scanner.offset,
      `expected the end of the file after the \`return\` statement, found ${scanner.describe(scanner.offset)}`,
    );
  }
}
