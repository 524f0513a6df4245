import fc from 'fast-check';
import { TnatError } from '../../src/errors.js';
import { parsePhpConfig } from '../../src/eduvpn/php.js';
import {
  CONSTANTS_CONFIG,
  PORTAL_CONFIG,
  VAR_EXPORT_CONFIG,
  plain,
  type Plain,
} from './php-fixtures.js';

const FILE = 'config.php';
const RUNS = { numRuns: 2000 };

/** Parses; any failure must be a TnatError with a file position, never a raw JS exception. */
function parsesOrFailsCleanly(text: string): void {
  try {
    parsePhpConfig(text, FILE);
  } catch (error) {
    if (!(error instanceof TnatError)) throw error;
    expect(error.code).toBe('E_SOURCE');
    expect(error.where?.file).toBe(FILE);
    expect(error.where?.line).toBeGreaterThanOrEqual(1);
    expect(error.where?.column).toBeGreaterThanOrEqual(1);
  }
}

/** Pieces of PHP syntax, so random text reaches deep into the reader rather than its first check. */
const TOKENS = [
  '[',
  ']',
  '(',
  ')',
  '{',
  '}',
  "'",
  '"',
  '`',
  ',',
  ';',
  '=>',
  '=',
  '.',
  '-',
  '+',
  '0',
  '1',
  '0x',
  '0b',
  'e',
  '_',
  '$',
  '$a',
  '{$',
  '${',
  '\\',
  '\\u{',
  '\\x',
  '\\0',
  'a',
  'true',
  'NULL',
  'array',
  'return',
  '?>',
  '<?php ',
  '/*',
  '*/',
  '//',
  '#',
  '#[',
  '\n',
  '\r\n',
  '\r',
  ' ',
  '<<<',
  'EOT',
  "'EOT'",
  '😀',
  '\uD800',
  'declare(',
  'use ',
  '::',
  '<=>',
  '??',
  'fn',
  '\u0000',
];

const syntaxSoup = fc
  .array(fc.constantFrom(...TOKENS), { maxLength: 60 })
  .map((parts) => parts.join(''));

describe('the PHP reader never throws a raw exception', () => {
  test('on arbitrary text', () => {
    fc.assert(fc.property(fc.string({ unit: 'binary' }), parsesOrFailsCleanly), RUNS);
  });

  test('on arbitrary bytes read as latin1 and as UTF-8', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        parsesOrFailsCleanly(Buffer.from(bytes).toString('latin1'));
        parsesOrFailsCleanly(`<?php return ${Buffer.from(bytes).toString('utf8')}`);
      }),
      RUNS,
    );
  });

  test('on random PHP-like token soup after an open tag', () => {
    fc.assert(
      fc.property(
        syntaxSoup,
        fc.constantFrom('<?php ', '<?php return ', '<?php return ['),
        (soup, head) => {
          parsesOrFailsCleanly(head + soup);
        },
      ),
      RUNS,
    );
  });

  const realistic = [PORTAL_CONFIG, VAR_EXPORT_CONFIG, CONSTANTS_CONFIG];

  test('on every truncation of the real-world configs, as during an editor write', () => {
    fc.assert(
      fc.property(fc.constantFrom(...realistic), fc.nat(), (config, cut) => {
        parsesOrFailsCleanly(config.slice(0, cut % (config.length + 1)));
      }),
      RUNS,
    );
  });

  test('a truncated config always fails, and at or before its end', () => {
    fc.assert(
      fc.property(fc.nat({ max: PORTAL_CONFIG.lastIndexOf(';') }), (cut) => {
        const text = PORTAL_CONFIG.slice(0, cut);
        expect(() => parsePhpConfig(text, FILE)).toThrow(TnatError);
      }),
      RUNS,
    );
  });

  test('on single-character mutations of the real-world configs', () => {
    const replacement = fc.oneof(
      fc.constantFrom(...TOKENS),
      fc.string({ unit: 'binary', maxLength: 1 }),
    );
    fc.assert(
      fc.property(
        fc.constantFrom(...realistic),
        fc.nat(),
        replacement,
        fc.constantFrom('replace', 'insert', 'delete'),
        (config, at, piece, how) => {
          const i = at % config.length;
          const text =
            how === 'insert'
              ? config.slice(0, i) + piece + config.slice(i)
              : config.slice(0, i) + (how === 'replace' ? piece : '') + config.slice(i + 1);
          parsesOrFailsCleanly(text);
        },
      ),
      RUNS,
    );
  });
});

/** PHP text and the tree PHP gives for it. */
interface Rendered {
  readonly php: string;
  readonly plain: Plain;
}

/** Whitespace and comments that may sit between any two tokens. */
const gap = fc
  .array(
    fc.constantFrom(' ', '\n', '\t', '\r\n', '/* c */', '/**/', '// c\n', '# c\n', '/* // # */'),
    {
      maxLength: 2,
    },
  )
  .map((parts) => parts.join(''));

function renderSingleQuoted(value: string, escapeAllBackslashes: boolean): string {
  let body = '';
  for (let i = 0; i < value.length; i++) {
    const char = value.charAt(i);
    const next = value.charAt(i + 1);
    // A backslash needs escaping only before a quote, another backslash or the closing quote.
    const mustEscape =
      char === "'" ||
      (char === '\\' && (escapeAllBackslashes || next === '' || next === '\\' || next === "'"));
    body += mustEscape ? `\\${char}` : char;
  }
  return `'${body}'`;
}

/** Styles: 0 plain, 1 ASCII as \xHH, 2 ASCII as octal, 3 all as \u{...}, 4 non-ASCII as UTF-8 bytes. */
function renderDoubleQuoted(value: string, style: number): string {
  let out = '';
  for (const char of value) {
    const code = char.codePointAt(0) ?? 0;
    const loneSurrogate = code >= 0xd800 && code <= 0xdfff;
    if (char === '\\' || char === '"' || char === '$') out += `\\${char}`;
    else if (char === '\n') out += '\\n';
    else if (loneSurrogate) out += char;
    else if (style === 1 && code < 0x80) out += `\\x${code.toString(16).padStart(2, '0')}`;
    else if (style === 2 && code < 0x80) out += `\\${code.toString(8).padStart(3, '0')}`;
    else if (style === 3) out += `\\u{${code.toString(16)}}`;
    else if (style === 4 && code >= 0x80) {
      for (const byte of new TextEncoder().encode(char)) out += `\\x${byte.toString(16)}`;
    } else out += char;
  }
  return `"${out}"`;
}

const phpString: fc.Arbitrary<Rendered> = fc
  .tuple(
    fc.oneof(
      fc.string({ unit: 'binary', maxLength: 12 }),
      // Mostly the characters that need escaping, so every escape rule is exercised.
      fc.string({
        unit: fc.constantFrom('\\', "'", '"', '$', '{', '}', 'a', '\n', '0', 'x', 'u', 'é'),
        maxLength: 12,
      }),
    ),
    fc.nat({ max: 6 }),
  )
  .map(([value, style]) => ({
    php: style <= 1 ? renderSingleQuoted(value, style === 0) : renderDoubleQuoted(value, style - 2),
    plain: value,
  }));

const phpInt: fc.Arbitrary<Rendered> = fc
  .tuple(fc.maxSafeInteger(), fc.nat({ max: 5 }))
  .map(([value, style]) => {
    const sign = value < 0 ? '-' : '';
    const magnitude = Math.abs(value);
    const digits = [
      magnitude.toString(),
      `0x${magnitude.toString(16).toUpperCase()}`,
      `0${magnitude.toString(8)}`,
      `0o${magnitude.toString(8)}`,
      `0b${magnitude.toString(2)}`,
      magnitude.toString().replace(/\B(?=(\d{3})+$)/g, '_'),
    ][style];
    return { php: `${sign}${digits ?? ''}`, plain: value };
  });

const phpFloat: fc.Arbitrary<Rendered> = fc
  .double({ noNaN: true, noDefaultInfinity: true })
  .map((value) => {
    const text = Object.is(value, -0) ? '-0.0' : String(value);
    return { php: /[.e]/.test(text) ? text : `${text}.0`, plain: { float: value } };
  });

function randomCase(word: string, mask: number): string {
  return word.replace(/./g, (c, i: number) => ((mask >> i) & 1 ? c.toUpperCase() : c));
}

const phpConstant: fc.Arbitrary<Rendered> = fc
  .tuple(fc.constantFrom(true, false, null), fc.nat({ max: 31 }))
  .map(([value, mask]) => ({ php: randomCase(String(value), mask), plain: value }));

/** Keys chosen to collide: small ints, numeric-looking strings, bools and null. */
const phpKey: fc.Arbitrary<{ readonly php: string; readonly key: string | number }> = fc.oneof(
  fc.integer({ min: -3, max: 8 }).map((key) => ({ php: String(key), key })),
  fc.constantFrom('a', 'b', '5', '05', '-1', '-0', '', '1.5', ' 2').map((text) => ({
    php: renderSingleQuoted(text, false),
    key: /^(0|-?[1-9][0-9]*)$/.test(text) ? Number(text) : text,
  })),
  fc
    .constantFrom<[string, string | number]>(['true', 1], ['FALSE', 0], ['null', ''], ['3.9', 3])
    .map(([php, key]) => ({ php, key })),
);

/** What PHP (8.3) makes of a list of entries: implicit keys, and later keys replacing earlier. */
function phpArrayModel(
  entries: readonly { key: string | number | undefined; plain: Plain }[],
): Plain {
  const result: [string | number, Plain][] = [];
  let next: number | undefined;
  for (const entry of entries) {
    const key = entry.key ?? next ?? 0;
    if (typeof key === 'number' && (next === undefined || key >= next)) next = key + 1;
    const existing = result.findIndex(([k]) => k === key);
    if (existing >= 0) result[existing] = [key, entry.plain];
    else result.push([key, entry.plain]);
  }
  return result;
}

const { value: phpValue } = fc.letrec<{ value: Rendered; array: Rendered }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    phpString,
    phpInt,
    phpFloat,
    phpConstant,
    tie('array'),
  ),
  array: fc
    .tuple(
      fc.boolean(),
      fc.array(fc.tuple(fc.option(phpKey, { nil: undefined }), tie('value'), gap, gap, gap), {
        maxLength: 5,
      }),
      fc.boolean(),
      gap,
      gap,
    )
    .map(([long, entries, trailingComma, open, close]) => {
      const parts = entries.map(([key, value, a, b, c]) =>
        key === undefined ? `${a}${value.php}${c}` : `${a}${key.php}${b}=>${c}${value.php}${a}`,
      );
      const body = parts.join(',') + (trailingComma && parts.length > 0 ? ',' : '');
      return {
        php: long ? `array${open}(${body}${close})` : `[${open}${body}${close}]`,
        plain: phpArrayModel(
          entries.map(([key, value]) => ({ key: key?.key, plain: value.plain })),
        ),
      };
    }),
}));

describe('the PHP reader reads back what a PHP literal means', () => {
  test('random literal trees rendered with random spacing and comments', () => {
    fc.assert(
      fc.property(phpValue, gap, gap, (value, before, after) => {
        const text = `<?php ${before}return ${value.php}${after};${after}`;
        expect(plain(parsePhpConfig(text, FILE))).toEqual(value.plain);
      }),
      RUNS,
    );
  });
});
