/**
 * The parts of PHP that nest: double-quoted strings (which may interpolate code), heredocs, and
 * whole expressions the reader does not evaluate but must step over without losing its place.
 */
import { MAX_NESTING, isDigit, isIdentifierStart } from './php-scanner.js';
import type { PhpScanner } from './php-scanner.js';

const CLOSING_BRACKETS = new Set([41, 93, 125]);

const SIMPLE_ESCAPES: Readonly<Record<number, string>> = {
  110: '\n', // n
  116: '\t', // t
  114: '\r', // r
  118: '\v', // v
  101: '\x1b', // e
  102: '\f', // f
  92: '\\',
  36: '$',
};

/**
 * Reads a double-quoted (or backtick) string at the scanner's offset. Returns its value, or
 * undefined when it interpolates variables or holds bytes that are not UTF-8: then only its end
 * was found.
 */
export function readInterpolated(scanner: PhpScanner, depth: number): string | undefined {
  const text = scanner.text;
  const start = scanner.offset;
  const quote = text.charCodeAt(start);
  // PHP strings are bytes: escapes like "\xc3\xa9" spell UTF-8 sequences byte by byte.
  const parts: (string | number)[] = [];
  let hasHighByte = false;
  let unreadable = false;
  let segment = start + 1;
  let i = segment;
  while (i < text.length) {
    const code = text.charCodeAt(i);
    if (code === quote) {
      parts.push(text.slice(segment, i));
      scanner.offset = i + 1;
      return unreadable ? undefined : joinParts(parts, hasHighByte);
    }
    if (
      code === 36 &&
      (isIdentifierStart(text.charCodeAt(i + 1)) || text.charCodeAt(i + 1) === 123)
    ) {
      unreadable = true;
      if (text.charCodeAt(i + 1) === 123) i = skipInterpolation(scanner, i + 2, depth);
      else i++;
      continue;
    }
    if (code === 123 && text.charCodeAt(i + 1) === 36) {
      unreadable = true;
      i = skipInterpolation(scanner, i + 1, depth);
      continue;
    }
    if (code !== 92) {
      i++;
      continue;
    }
    const next = text.charCodeAt(i + 1);
    parts.push(text.slice(segment, i));
    const simple = next === quote ? String.fromCharCode(quote) : SIMPLE_ESCAPES[next];
    if (simple !== undefined) {
      parts.push(simple);
      i += 2;
    } else if (next >= 48 && next <= 55) {
      let end = i + 2;
      while (end < i + 4 && isOctal(text.charCodeAt(end))) end++;
      const byte = parseInt(text.slice(i + 1, end), 8) & 0xff;
      hasHighByte ||= byte >= 0x80;
      parts.push(byte);
      i = end;
    } else if (next === 120 && isHex(text.charCodeAt(i + 2))) {
      const end = isHex(text.charCodeAt(i + 3)) ? i + 4 : i + 3;
      const byte = parseInt(text.slice(i + 2, end), 16);
      hasHighByte ||= byte >= 0x80;
      parts.push(byte);
      i = end;
    } else if (next === 117 && text.charCodeAt(i + 2) === 123) {
      const close = text.indexOf('}', i + 3);
      const digits = close < 0 ? '' : text.slice(i + 3, close);
      if (!/^[0-9a-fA-F]+$/.test(digits)) {
        scanner.fail(i, 'a `\\u{...}` escape needs hexadecimal digits and a closing `}`');
      }
      const codePoint = parseInt(digits, 16);
      if (codePoint > 0x10ffff)
        scanner.fail(i, `\`\\u{${digits}}\` is beyond the last Unicode code point`);
      // A lone surrogate is no character: PHP writes bytes that are not UTF-8.
      if (codePoint >= 0xd800 && codePoint <= 0xdfff) unreadable = true;
      else parts.push(String.fromCodePoint(codePoint));
      i = close + 1;
    } else {
      // An unknown escape keeps its backslash; the next character is read normally.
      parts.push('\\');
      i++;
    }
    segment = i;
  }
  return scanner.failAtEnd('the string', start);
}

function joinParts(parts: readonly (string | number)[], hasHighByte: boolean): string | undefined {
  if (!hasHighByte) {
    return parts
      .map((part) => (typeof part === 'number' ? String.fromCharCode(part) : part))
      .join('');
  }
  const encoder = new TextEncoder();
  const bytes: number[] = [];
  for (const part of parts) {
    if (typeof part === 'number') bytes.push(part);
    else for (const byte of encoder.encode(part)) bytes.push(byte);
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(new Uint8Array(bytes));
  } catch {
    return undefined;
  }
}

/** Skips the code of `{$...}` or `${...}` inside a string; `from` is just past the `{`. */
function skipInterpolation(scanner: PhpScanner, from: number, depth: number): number {
  const resume = scanner.offset;
  scanner.offset = from;
  const end = skipCode(scanner, depth + 1, 'value', from - 1);
  scanner.offset = resume;
  return end;
}

/**
 * Where skipped code ends, outside any bracket: always at `,`, `;`, `?>` or an unmatched closing
 * bracket; an array key also ends at `=>`, a statement also at the keyword `return`.
 */
export type SkipUntil = 'key' | 'value' | 'statement';

/**
 * Skips one expression the reader does not evaluate, honouring strings, comments and nesting.
 * With `openedAt`, the scanner sits just inside a `{` at that offset and stops after its `}`.
 * Returns the end offset of the expression's last token, so trailing comments stay outside.
 */
export function skipCode(
  scanner: PhpScanner,
  depth: number,
  until: SkipUntil,
  openedAt?: number,
): number {
  if (depth >= MAX_NESTING) {
    scanner.fail(
      scanner.offset,
      `the expression nests deeper than ${MAX_NESTING} levels, which traceable-nat refuses`,
    );
  }
  const text = scanner.text;
  const stack: { closer: number; openedAt: number }[] =
    openedAt === undefined ? [] : [{ closer: 125, openedAt }];
  let lastEnd = scanner.offset;
  for (;;) {
    scanner.skipTrivia();
    const at = scanner.offset;
    const code = text.charCodeAt(at);
    const top = stack.at(-1);
    if (at >= text.length) {
      if (top === undefined) return lastEnd;
      scanner.failAtEnd(`the \`${text.charAt(top.openedAt)}\``, top.openedAt);
    }
    const closesTag = code === 63 && text.charCodeAt(at + 1) === 62;
    if (top === undefined) {
      if (code === 44 || code === 59 || code === 41 || code === 93 || code === 125) return lastEnd;
      if (closesTag || (until === 'key' && code === 61 && text.charCodeAt(at + 1) === 62))
        return lastEnd;
      if (until === 'statement' && isReturnKeyword(scanner, at)) return lastEnd;
    } else if (closesTag || CLOSING_BRACKETS.has(code)) {
      if (code === top.closer) {
        stack.pop();
        scanner.offset++;
        if (openedAt !== undefined && stack.length === 0) return scanner.offset;
        lastEnd = scanner.offset;
        continue;
      }
      const { line, column } = scanner.position(top.openedAt);
      scanner.fail(
        at,
        `expected \`${String.fromCharCode(top.closer)}\` to close the \`${text.charAt(top.openedAt)}\` at line ${line}, column ${column}, found ${scanner.describe(at)}`,
      );
    }
    if (code === 40 || code === 91 || code === 123 || code === 35) {
      if (depth + stack.length >= MAX_NESTING) {
        scanner.fail(
          at,
          `the expression nests deeper than ${MAX_NESTING} levels, which traceable-nat refuses`,
        );
      }
      // `#` here is always `#[` (an attribute), since skipTrivia took every other `#`.
      stack.push({ closer: code === 40 ? 41 : code === 123 ? 125 : 93, openedAt: at });
      scanner.offset += code === 35 ? 2 : 1;
    } else if (code === 39) {
      scanner.readSingleQuoted();
    } else if (code === 34 || code === 96) {
      readInterpolated(scanner, depth + stack.length + 1);
    } else if (text.startsWith('<<<', at)) {
      skipHeredoc(scanner);
    } else if (text.startsWith('<=>', at)) {
      scanner.offset += 3;
    } else if (isIdentifierStart(code) || isDigit(code)) {
      scanner.offset = scanner.identifierEnd(at);
    } else {
      scanner.offset++;
    }
    lastEnd = scanner.offset;
  }
}

/** Skips `<<<ID ... ID` or `<<<'ID' ... ID`; the closing marker may be indented (PHP 7.3). */
function skipHeredoc(scanner: PhpScanner): void {
  const text = scanner.text;
  const start = scanner.offset;
  const opening =
    /^<<<[ \t]*(["']?)([A-Za-z_\x80-\uffff][A-Za-z0-9_\x80-\uffff]*)\1(\r\n|\n|\r)/.exec(
      text.slice(start, start + 300),
    );
  const marker = opening?.[2];
  if (opening === null || marker === undefined) {
    scanner.offset += 3;
    return;
  }
  let from = start + opening[0].length;
  for (;;) {
    const found = text.indexOf(marker, from);
    if (found < 0) scanner.failAtEnd('the heredoc', start);
    const after = found + marker.length;
    let lineStart = found;
    while (lineStart > 0 && (text[lineStart - 1] === ' ' || text[lineStart - 1] === '\t'))
      lineStart--;
    const atLineStart =
      lineStart === 0 || text[lineStart - 1] === '\n' || text[lineStart - 1] === '\r';
    if (atLineStart && scanner.identifierEnd(after) === after) {
      scanner.offset = after;
      return;
    }
    from = found + 1;
  }
}

function isReturnKeyword(scanner: PhpScanner, at: number): boolean {
  const end = scanner.identifierEnd(at);
  return end - at === 6 && scanner.text.slice(at, end).toLowerCase() === 'return';
}

function isOctal(code: number): boolean {
  return code >= 48 && code <= 55;
}

function isHex(code: number): boolean {
  return isDigit(code) || (code >= 97 && code <= 102) || (code >= 65 && code <= 70);
}
