import { TnatError } from '../../src/errors.js';
import {
  expectArray,
  expectBool,
  expectInt,
  expectString,
  expectStringOrList,
  getEntry,
  parsePhpConfig,
} from '../../src/eduvpn/php.js';
import type { PhpValue } from '../../src/eduvpn/php-value.js';

const FILE = '/etc/vpn-user-portal/config.php';

/** Parses `<?php return [ 'v' => <source> ];` and returns the value of 'v' (at line 2). */
function valueOf(source: string): PhpValue {
  const root = parsePhpConfig(`<?php return [\n'v' => ${source}];`, FILE);
  const value = getEntry(root, 'v');
  if (value === undefined) throw new Error('no value');
  return value;
}

function caught(run: () => unknown): TnatError {
  try {
    run();
  } catch (error) {
    if (error instanceof TnatError) return error;
    throw error;
  }
  throw new Error('expected a TnatError');
}

describe('getEntry', () => {
  const root = parsePhpConfig(
    "<?php return ['a' => 1, 5 => 'five', '-2' => 'minus', '05' => 'padded', 'x', 'a' => 2];",
    FILE,
  );
  const cases: [string | number, unknown][] = [
    ['a', 2],
    [5, 'five'],
    ['5', 'five'],
    [-2, 'minus'],
    ['-2', 'minus'],
    ['05', 'padded'],
    [6, 'x'],
    ['missing', undefined],
    [7, undefined],
  ];
  test.each(cases)('key %p', (key, expected) => {
    const value = getEntry(root, key);
    expect(value !== undefined && 'value' in value ? value.value : value).toEqual(expected);
  });

  test('is undefined on anything but an array', () => {
    expect(getEntry(valueOf("'text'"), 0)).toBeUndefined();
    expect(getEntry(valueOf('FOO'), 'FOO')).toBeUndefined();
  });
});

describe('expect* accept the right kind', () => {
  test('each returns the plain value', () => {
    expect(expectString(valueOf("'10.0.0.0/24'"), FILE, 'x')).toBe('10.0.0.0/24');
    expect(expectInt(valueOf('0x10'), FILE, 'x')).toBe(16);
    expect(expectBool(valueOf('FALSE'), FILE, 'x')).toBe(false);
    expect(expectArray(valueOf("['a' => 1]"), FILE, 'x').map((entry) => entry.key)).toEqual(['a']);
  });

  test('expectStringOrList makes a string a list of one and keeps positions', () => {
    expect(expectStringOrList(valueOf("'10.0.0.0/24'"), FILE, 'x')).toEqual([
      { value: '10.0.0.0/24', pos: { line: 2, column: 8 } },
    ]);
    expect(expectStringOrList(valueOf("['a', 'b']"), FILE, 'x')).toEqual([
      { value: 'a', pos: { line: 2, column: 9 } },
      { value: 'b', pos: { line: 2, column: 14 } },
    ]);
    expect(expectStringOrList(valueOf('[]'), FILE, 'x')).toEqual([]);
  });
});

describe('expect* refuse everything else with one sentence at the value', () => {
  const what = "'oRangeFour' of profile 'internet'";
  const cases: [string, () => unknown, string][] = [
    [
      'an expression',
      () => expectString(valueOf('RANGE_CONST'), FILE, what, '10.0.0.0/24'),
      `${what} must be a string like '10.0.0.0/24', but it is the expression RANGE_CONST, which traceable-nat does not evaluate: write the value literally`,
    ],
    [
      'an int for a string',
      () => expectString(valueOf('24'), FILE, what),
      `${what} must be a string, but it is the integer 24`,
    ],
    [
      'null',
      () => expectString(valueOf('null'), FILE, what),
      `${what} must be a string, but it is null`,
    ],
    [
      'an empty array',
      () => expectString(valueOf('[]'), FILE, what),
      `${what} must be a string, but it is an empty array`,
    ],
    [
      'a float for an int',
      () => expectInt(valueOf('1.5'), FILE, 'setMtu'),
      'setMtu must be an integer, but it is the float 1.5',
    ],
    [
      'a string for an int',
      () => expectInt(valueOf("'1'"), FILE, 'setMtu'),
      "setMtu must be an integer, but it is the string '1'",
    ],
    [
      'an int for a bool',
      () => expectBool(valueOf('1'), FILE, 'defaultGateway'),
      'defaultGateway must be true or false, but it is the integer 1',
    ],
    [
      'a bool for an array',
      () => expectArray(valueOf('true'), FILE, 'ProfileList'),
      'ProfileList must be an array, but it is true',
    ],
    [
      'a long expression is shortened to one line',
      () => expectArray(valueOf(`f(\n${"'xxxxxxxxxx', ".repeat(10)})`), FILE, 'ProfileList'),
      "ProfileList must be an array, but it is the expression f( 'xxxxxxxxxx', 'xxxxxxxxxx', 'xxxxxxxxxx', 'xxxxxxxxxx'..., which traceable-nat does not evaluate: write the value literally",
    ],
    [
      'quotes inside a shown string are escaped',
      () => expectInt(valueOf(String.raw`'it\'s'`), FILE, 'n'),
      String.raw`n must be an integer, but it is the string 'it\'s'`,
    ],
    [
      'an int where a string or list is expected',
      () => expectStringOrList(valueOf('5'), FILE, what, '10.0.0.0/24'),
      `${what} must be a string like '10.0.0.0/24' or a list of strings, but it is the integer 5`,
    ],
  ];
  test.each(cases)('%s', (_name, run, sentence) => {
    const error = caught(run);
    expect(error.code).toBe('E_SOURCE');
    expect(error.where).toEqual({ file: FILE, line: 2, column: 8 });
    expect(error.message).toBe(`${FILE}:2:8: ${sentence}`);
  });

  test('a wrong list entry is named by its key and located at itself', () => {
    const error = caught(() => expectStringOrList(valueOf("['10.0.0.0/24', FOO]"), FILE, what));
    expect(error.where).toEqual({ file: FILE, line: 2, column: 24 });
    expect(error.message).toBe(
      `${FILE}:2:24: entry 1 of ${what} must be a string, but it is the expression FOO, which traceable-nat does not evaluate: write the value literally`,
    );
    const keyed = caught(() => expectStringOrList(valueOf("['k' => null]"), FILE, 'hostName'));
    expect(keyed.message).toMatch(/entry 'k' of hostName must be a string, but it is null$/);
  });
});
