import { TnatError } from '../../src/errors.js';
import { parsePhpConfig } from '../../src/eduvpn/php.js';
import type { PhpValue } from '../../src/eduvpn/php-value.js';
import {
  CONSTANTS_CONFIG,
  PORTAL_CONFIG,
  VAR_EXPORT_CONFIG,
  plain,
  type Plain,
} from './php-fixtures.js';

const FILE = '/etc/vpn-user-portal/config.php';

function returned(expression: string): Plain {
  return plain(parsePhpConfig(`<?php return ${expression};`, FILE));
}

function caught(text: string): TnatError {
  try {
    parsePhpConfig(text, FILE);
  } catch (error) {
    if (error instanceof TnatError) return error;
    throw error;
  }
  throw new Error(`expected a TnatError for ${JSON.stringify(text)}`);
}

/** CPU time rather than wall time: parallel test workers on a busy machine must not make it flaky. */
function timed<T>(run: () => T): [T, number] {
  const before = process.cpuUsage();
  const result = run();
  const used = process.cpuUsage(before);
  return [result, (used.user + used.system) / 1000];
}

const opaque = (text: string): Plain => ({ opaque: text });
const float = (value: number): Plain => ({ float: value });

describe('parsePhpConfig literals', () => {
  const strings: [string, string, Plain][] = [
    ['single-quoted', `'abc'`, 'abc'],
    ['escaped backslash', String.raw`'a\\b'`, 'a\\b'],
    ['escaped quote', String.raw`'it\'s'`, "it's"],
    ['other backslashes are literal', String.raw`'a\nb\x41'`, String.raw`a\nb\x41`],
    ['a trailing literal backslash pair', String.raw`'C:\temp\\'`, 'C:\\temp\\'],
    ['newline inside', `'line1\nline2'`, 'line1\nline2'],
    ['URL with //', `'https://example.org/x#y'`, 'https://example.org/x#y'],
    ['empty', `''`, ''],
    ['double-quoted simple escapes', String.raw`"a\nb\tc\rd\ve\ef\f"`, 'a\nb\tc\rd\ve\x1bf\f'],
    ['double-quoted backslash, dollar and quote', '"\\\\ \\$ \\""', '\\ $ "'],
    ['octal escapes', String.raw`"\101\60\0x"`, 'A0\0x'],
    ['octal escape overflow wraps', String.raw`"\400"`, '\0'],
    ['hex escapes', String.raw`"\x41\x4a\x4g"`, 'AJ\x04g'],
    ['unicode escapes', String.raw`"\u{1F600}\u{e9}"`, '😀é'],
    ['UTF-8 spelled in bytes', String.raw`"\xc3\xa9"`, 'é'],
    ['unknown escapes keep the backslash', String.raw`"\q\u\x\{"`, String.raw`\q\u\x\{`],
    ['a dollar before a digit', `"cost: $5 $"`, 'cost: $5 $'],
    ['single quote inside double', `"it's"`, "it's"],
    ['non-ASCII text', `'Zoë 😀'`, 'Zoë 😀'],
  ];
  test.each(strings)('string: %s', (_name, source, expected) => {
    expect(returned(source)).toEqual(expected);
  });

  const numbers: [string, Plain][] = [
    ['0', 0],
    ['42', 42],
    ['-7', -7],
    ['+7', 7],
    ['- 7', -7],
    ['- -7', 7],
    ['-/* c */7', -7],
    ['0x1F', 31],
    ['0X1f', 31],
    ['-0x10', -16],
    ['0o17', 15],
    ['0O17', 15],
    ['017', 15],
    ['0b101', 5],
    ['0B1_01', 5],
    ['1_000_000', 1000000],
    ['0x7FFF_FFFF', 2147483647],
    ['9007199254740991', 9007199254740991],
    ['-9007199254740991', -9007199254740991],
    ['1.5', float(1.5)],
    ['1e3', float(1000)],
    ['1E-2', float(0.01)],
    ['.5', float(0.5)],
    ['-.5', float(-0.5)],
    ['1.', float(1)],
    ['1.e3', float(1000)],
    ['1_0.5_0', float(10.5)],
    ['6.02E+23', float(6.02e23)],
    ['0755.5', float(755.5)],
    ['07e1', float(70)],
    ['9223372036854775808', float(2 ** 63)],
    ['0xFFFFFFFFFFFFFFFF', float(2 ** 64)],
    ['0x0000000000000000000000001', 1],
    ['0x1_0000_0000_0000_0000', float(2 ** 64)],
    ['0b' + '1'.padEnd(65, '0'), float(2 ** 64)],
    ['0' + '1'.padEnd(23, '0'), float(2 ** 66)],
    ['1' + '0'.repeat(400), float(Infinity)],
    ['-9223372036854775808', float(-(2 ** 63))],
    // PHP ints JavaScript cannot hold exactly: kept as text rather than silently rounded.
    ['9223372036854775807', opaque('9223372036854775807')],
    ['9007199254740993', opaque('9007199254740993')],
    ['--7', opaque('--7')],
    ['-(7)', opaque('-(7)')],
  ];
  test.each(numbers)('number: %s', (source, expected) => {
    expect(returned(source)).toEqual(expected);
  });

  test('-0 is the int 0 and -0.0 the float -0, as in PHP', () => {
    expect(Object.is(returned('-0'), 0)).toBe(true);
    expect(returned('-0.0')).toEqual(float(-0));
  });

  const constants: [string, Plain][] = [
    ['true', true],
    ['TRUE', true],
    ['False', false],
    ['null', null],
    ['NULL', null],
    ['nUlL', null],
  ];
  test.each(constants)('constant: %s', (source, expected) => {
    expect(returned(source)).toEqual(expected);
  });
});

describe('parsePhpConfig arrays', () => {
  const cases: [string, string, Plain][] = [
    ['empty short', '[]', []],
    ['empty with space and comment', '[ /* none */ ]', []],
    ['empty long', 'array()', []],
    ['long, any case, space before (', 'ARRAY ( 1, )', [[0, 1]]],
    [
      'implicit keys',
      "['a', 'b']",
      [
        [0, 'a'],
        [1, 'b'],
      ],
    ],
    [
      'trailing comma',
      '[1, 2,]',
      [
        [0, 1],
        [1, 2],
      ],
    ],
    [
      'implicit key after an int key',
      "[5 => 'a', 'b']",
      [
        [5, 'a'],
        [6, 'b'],
      ],
    ],
    [
      'implicit key after the largest int key',
      "[5 => 'a', 2 => 'b', 'c']",
      [
        [5, 'a'],
        [2, 'b'],
        [6, 'c'],
      ],
    ],
    [
      'string keys do not count',
      "['x' => 1, 'y']",
      [
        ['x', 1],
        [0, 'y'],
      ],
    ],
    [
      'negative keys count up (PHP 8.3)',
      "[-5 => 'a', 'b']",
      [
        [-5, 'a'],
        [-4, 'b'],
      ],
    ],
    [
      'decimal-int strings become int keys',
      "['5' => 'a', '05' => 'b', '-3' => 'c', '-0' => 'd', '1.5' => 'e', ' 1' => 'f']",
      [
        [5, 'a'],
        ['05', 'b'],
        [-3, 'c'],
        ['-0', 'd'],
        ['1.5', 'e'],
        [' 1', 'f'],
      ],
    ],
    [
      'a numeric string key beyond 2^53 stays a string',
      "['9007199254740993' => 1]",
      [['9007199254740993', 1]],
    ],
    [
      'bool, null and float keys',
      "[true => 'a', false => 'b', null => 'c', 2.7 => 'd']",
      [
        [1, 'a'],
        [0, 'b'],
        ['', 'c'],
        [2, 'd'],
      ],
    ],
    [
      'a repeated key replaces in place',
      "['a' => 1, 'b' => 2, 'a' => 3]",
      [
        ['a', 3],
        ['b', 2],
      ],
    ],
    ['an implicit key can be replaced', "['x', 0 => 'y']", [[0, 'y']]],
    [
      'nested',
      "['a' => ['b' => [1, [2]]]]",
      [
        [
          'a',
          [
            [
              'b',
              [
                [0, 1],
                [1, [[0, 2]]],
              ],
            ],
          ],
        ],
      ],
    ],
    ['mixed syntaxes nested', "array('a' => [array()])", [['a', [[0, []]]]]],
    [
      'constant as key',
      "[FOO => 1, 'x']",
      [
        ['FOO', 1],
        [0, 'x'],
      ],
    ],
    ['class constant as key', '[PDO::ATTR_ERRMODE => 2]', [['PDO::ATTR_ERRMODE', 2]]],
    ['comments between tokens', "[ # a\n 'k' // b\n => /* c */ 1 /* d */, ]", [['k', 1]]],
    [
      'parenthesised literals',
      "[('a'), ((1)) => ('b')]",
      [
        [0, 'a'],
        [1, 'b'],
      ],
    ],
  ];
  test.each(cases)('%s', (_name, source, expected) => {
    expect(returned(source)).toEqual(expected);
  });
});

describe('parsePhpConfig expressions it does not evaluate', () => {
  const cases: [string, string][] = [
    ['a constant', 'RADIUS_REPLY_MESSAGE'],
    ['a class constant', 'PDO::ATTR_ERRMODE'],
    ['a namespaced constant', '\\Foo\\BAR'],
    ['a fully qualified true', '\\true'],
    ['concatenation', "'a' . 'b'"],
    ['__DIR__', "__DIR__ . '/x'"],
    ['a call', "getenv('X')"],
    ['new', 'new Foo(1, [2])'],
    ['a closure', 'function () { return [1, 2]; }'],
    ['an arrow function', 'fn($x) => $x + 1'],
    ['arithmetic', '1 + 2'],
    ['array union', '[1] + [2]'],
    ['string offset', "'abc'[0]"],
    ['a callable string', "'strlen'('x')"],
    ['a static call on a string', "'Foo'::bar()"],
    ['a cast', "(int) '5'"],
    ['negated constant', '-FOO'],
    ['a variable', '$x'],
    ['a ternary', 'true ? 1 : 2'],
    ['the spaceship operator', '1 <=> 2'],
    ['a word operator', 'true and false'],
    ['instanceof', 'true instanceof Foo'],
    ['interpolation', '"hi $name"'],
    ['braced interpolation with quotes inside', '"{$a["b"]}"'],
    ['dollar-brace interpolation', '"${a}"'],
    ['bytes that are not UTF-8', String.raw`"\xff"`],
    ['a lone surrogate', String.raw`"\u{D800}"`],
    ['a backtick command', '`ls -l`'],
    ['a heredoc', '<<<EOT\n  a ] , ;\n  EOT'],
    ['a nowdoc', "<<<'EOT'\n{$x} ]\nEOT"],
    ['an attribute before a closure', '#[Pure] fn() => 1'],
    ['match', "match($x) { 1 => 'a', default => 'b' }"],
  ];
  test.each(cases)('%s', (_name, source) => {
    expect(returned(source)).toEqual(opaque(source));
  });

  const inArrays: [string, string, Plain][] = [
    [
      'an arrow function as a value',
      "['k' => fn($x) => $x, 'n' => 1]",
      [
        ['k', opaque('fn($x) => $x')],
        ['n', 1],
      ],
    ],
    [
      'a trailing comment is not part of it',
      "['k' => FOO /* c */ , 'n' => 1]",
      [
        ['k', opaque('FOO')],
        ['n', 1],
      ],
    ],
    ['an inner comment is', "['k' => 'a' . // c\n 'b']", [['k', opaque("'a' . // c\n 'b'")]]],
    [
      'a heredoc with brackets',
      "['k' => <<<EOT\n ] ,\n EOT, 'n' => 1]",
      [
        ['k', opaque('<<<EOT\n ] ,\n EOT')],
        ['n', 1],
      ],
    ],
    [
      'a string with brackets',
      "['k' => f(']', \")\"), 'n' => 1]",
      [
        ['k', opaque('f(\']\', ")")')],
        ['n', 1],
      ],
    ],
    [
      'an opaque implicit value',
      '[FOO, 1]',
      [
        [0, opaque('FOO')],
        [1, 1],
      ],
    ],
    [
      'a spread',
      '[...$a, 1]',
      [
        [0, opaque('...$a')],
        [1, 1],
      ],
    ],
  ];
  test.each(inArrays)('%s', (_name, source, expected) => {
    expect(returned(source)).toEqual(expected);
  });
});

describe('parsePhpConfig statements around the return', () => {
  const cases: [string, string, Plain][] = [
    ['declare', '<?php declare(strict_types=1); return 1;', 1],
    [
      'namespace and use',
      '<?php\nnamespace Foo\\Bar;\nuse A\\B;\nuse C\\{D, E};\nuse F, G as H;\nreturn 1;',
      1,
    ],
    [
      'define, const, require',
      "<?php define('X', 1); const Y = 2, Z = 3; require_once __DIR__ . '/c.php'; include 'x.php'; return X;",
      opaque('X'),
    ],
    ['close tag with a newline', '<?php return 1; ?>\n', 1],
    ['close tag instead of a semicolon', '<?php return 1 ?>', 1],
    ['upper-case open tag', '<?PHP return 1;', 1],
    ['byte order mark and leading whitespace', '\uFEFF\n <?php return 1;', 1],
    ['return right after the tag', '<?php\nreturn[1];', [[0, 1]]],
    [
      'comments everywhere',
      '<?php # c\n// c\n/* c */ return /* x */ [ // y\n 1 # z\n ] /* w */ ; // end',
      [[0, 1]],
    ],
    ['a // comment ends at ?>', '<?php return 1; // c ?>', 1],
    ['CRLF line ends', "<?php\r\nreturn [\r\n  'a' => 1,\r\n];\r\n", [['a', 1]]],
    ['returning a string', "<?php return 'x';", 'x'],
  ];
  test.each(cases)('%s', (_name, text, expected) => {
    expect(plain(parsePhpConfig(text, FILE))).toEqual(expected);
  });
});

describe('parsePhpConfig positions', () => {
  const text = "<?php\nreturn [\n    'a' => 1,\n    'list' => ['x', FOO],\n    2.5,\n];\n";
  const root = parsePhpConfig(text, FILE);

  test('every value and entry carries its 1-based line and column', () => {
    expect(root).toEqual({
      kind: 'array',
      pos: { line: 2, column: 8 },
      entries: [
        {
          key: 'a',
          pos: { line: 3, column: 5 },
          value: { kind: 'int', value: 1, pos: { line: 3, column: 12 } },
        },
        {
          key: 'list',
          pos: { line: 4, column: 5 },
          value: {
            kind: 'array',
            pos: { line: 4, column: 15 },
            entries: [
              {
                key: 0,
                pos: { line: 4, column: 16 },
                value: { kind: 'string', value: 'x', pos: { line: 4, column: 16 } },
              },
              {
                key: 1,
                pos: { line: 4, column: 21 },
                value: { kind: 'opaque', text: 'FOO', pos: { line: 4, column: 21 } },
              },
            ],
          },
        },
        {
          key: 0,
          pos: { line: 5, column: 5 },
          value: { kind: 'float', value: 2.5, pos: { line: 5, column: 5 } },
        },
      ],
    } satisfies PhpValue);
  });

  const positions: [string, string, number, number][] = [
    ['CRLF counts as one line end', "<?php\r\nreturn\r\n  [\r\n    'v'];", 4, 5],
    ['a lone CR is a line end', "<?php\rreturn\r['v'];", 3, 2],
    ['columns count characters, not UTF-16 units', "<?php return ['😀😀', 'v'];", 1, 21],
    ['a byte order mark is not a column', "\uFEFF<?php return ['v'];", 1, 15],
    ['a signed number starts at its sign', "<?php return ['v', - 1];", 1, 20],
  ];
  test.each(positions)('%s', (_name, source, line, column) => {
    const value = parsePhpConfig(source, FILE);
    const last = value.kind === 'array' ? value.entries.at(-1)?.value : undefined;
    expect(last?.pos).toEqual({ line, column });
  });
});

describe('parsePhpConfig real-world files', () => {
  test('an eduVPN 3.x portal config.php', () => {
    const config = plain(parsePhpConfig(PORTAL_CONFIG, FILE));
    expect(config).toEqual([
      ['authModule', 'DbAuthModule'],
      [
        'Db',
        [
          ['dbDsn', 'sqlite:/var/lib/vpn-user-portal/db.sqlite'],
          ['dbUser', null],
          ['dbPass', null],
        ],
      ],
      [
        'adminUserIdList',
        [
          [0, 'admin'],
          [1, "o'brien"],
          [2, 'DOMAIN\\user'],
        ],
      ],
      ['sessionExpiry', 'P90D'],
      [
        'WireGuard',
        [
          ['listenPort', 51820],
          ['setMtu', 1392],
        ],
      ],
      ['Api', [['consumerList', []]]],
      [
        'ProfileList',
        [
          [
            0,
            [
              ['profileId', 'internet'],
              ['displayName', 'Internet Access'],
              ['hostName', 'vpn.example.org'],
              [
                'dnsServerList',
                [
                  [0, '9.9.9.9'],
                  [1, '2620:fe::fe'],
                ],
              ],
              ['oRangeFour', '10.42.42.0/24'],
              ['oRangeSix', 'fd42::/64'],
              ['wRangeFour', '10.43.43.0/24'],
              ['wRangeSix', 'fd43::/64'],
              [
                'oUdpPortList',
                [
                  [0, 1194],
                  [1, 1195],
                ],
              ],
              [
                'oTcpPortList',
                [
                  [0, 1194],
                  [1, 1195],
                ],
              ],
              ['defaultGateway', true],
            ],
          ],
          [
            1,
            [
              ['profileId', 'office'],
              ['displayName', 'Office (split tunnel)'],
              [
                'hostName',
                [
                  [0, 'vpn1.example.org'],
                  [1, 'vpn2.example.org'],
                ],
              ],
              [
                'nodeUrl',
                [
                  [0, 'http://10.1.0.1:41194'],
                  [1, 'http://10.1.0.2:41194'],
                ],
              ],
              [
                'onNode',
                [
                  [0, 0],
                  [1, 1],
                ],
              ],
              [
                'wRangeFour',
                [
                  [0, '10.44.0.0/24'],
                  [1, '10.44.1.0/24'],
                ],
              ],
              [
                'wRangeSix',
                [
                  [0, 'fd44:0::/64'],
                  [1, 'fd44:1::/64'],
                ],
              ],
              ['routeList', [[0, '192.168.1.0/24']]],
              ['defaultGateway', false],
              ['aclPermissionList', [[0, 'https://idp.example.org/groups#staff']]],
            ],
          ],
          [
            2,
            [
              ['profileId', 'admin-only'],
              ['displayName', 'Admins 🔒'],
              ['hostName', 'vpn.example.org'],
              ['oRangeFour', '10.45.0.0/25'],
              ['oRangeSix', 'fd45::/64'],
              ['oUdpPortList', [[0, 1196]]],
              ['oTcpPortList', []],
              ['dnsDomainSearch', [[0, 'example.org']]],
            ],
          ],
        ],
      ],
      ['Log', [['authLog', false]]],
    ]);
  });

  test('a 1.x var_export config with numeric keys', () => {
    const config = plain(parsePhpConfig(VAR_EXPORT_CONFIG, FILE));
    expect(config).toEqual([
      ['instanceNumber', 1],
      [
        'vpnProfiles',
        [
          [
            'internet',
            [
              ['profileNumber', 1],
              ['displayName', 'Internet Access'],
              ['range', '10.0.0.0/25'],
              ['range6', 'fd00:4242:4242:4242::/64'],
              ['hostName', 'vpn.example'],
              [
                'vpnProtoPorts',
                [
                  [0, 'udp/1194'],
                  [1, 'tcp/1194'],
                ],
              ],
              ['enableAcl', false],
              ['aclGroupList', []],
            ],
          ],
        ],
      ],
    ]);
    expect(
      plain(parsePhpConfig("<?php return array ( 'key' => array ( 0 => 'udp/1194', ), );", FILE)),
    ).toEqual([['key', [[0, 'udp/1194']]]]);
  });

  test('constants and expressions in unrelated keys stay opaque', () => {
    const config = plain(parsePhpConfig(CONSTANTS_CONFIG, FILE));
    expect(config).toEqual([
      [
        'Db',
        [
          ['dbDsn', opaque("'sqlite:' . __DIR__ . '/../data/db.sqlite'")],
          ['dbOptions', [['PDO::ATTR_ERRMODE', opaque('PDO::ERRMODE_EXCEPTION')]]],
          ['dbPass', opaque("getenv('DB_PASS') ?: 'secret'")],
        ],
      ],
      ['RadiusAuthModule', [['replyMessage', opaque('RADIUS_REPLY_MESSAGE')]]],
      ['sessionExpiry', opaque("'P' . SESSION_DAYS . 'D'")],
      ['templateDir', opaque("__DIR__ . '/views'")],
      ['hook', opaque("function (array $c): array { return [$c, 'x' => \"{$c['y']}\"]; }")],
      [
        'ProfileList',
        [
          [
            0,
            [
              ['profileId', 'internet'],
              ['oRangeFour', '10.42.42.0/24'],
              ['oRangeSix', 'fd42::/64'],
            ],
          ],
        ],
      ],
    ]);
  });

  test('a 1 MB configuration reads in well under a second', () => {
    const profile = (n: number): string =>
      `    [\n        'profileId' => 'p${n}', // profile ${n}\n        'displayName' => "Profile \\u{e9} ${n}",\n` +
      `        'oRangeFour' => '10.${n % 256}.0.0/24',\n        'oUdpPortList' => [1194, 0x4AB, 1_196],\n` +
      `        'dsn' => __DIR__ . '/x/${n}',\n    ],\n`;
    let body = '';
    for (let n = 0; body.length < 1_000_000; n++) body += profile(n);
    const text = `<?php\nreturn ['ProfileList' => [\n${body}]];\n`;
    const [config, milliseconds] = timed(() => parsePhpConfig(text, FILE));
    expect(config.kind === 'array' && config.entries[0]?.value.kind).toBe('array');
    expect(milliseconds).toBeLessThan(1000);
  });

  test('a 1 MB single line of non-BMP characters reads in well under a second', () => {
    const text = `<?php return [${"'😀', ".repeat(150_000)}FOO];`;
    const [config, milliseconds] = timed(() => parsePhpConfig(text, FILE));
    expect(milliseconds).toBeLessThan(1000);
    expect(config.kind === 'array' && config.entries.at(-1)?.value.pos).toEqual({
      line: 1,
      column: 15 + 150_000 * 5,
    });
  });
});

describe('parsePhpConfig errors', () => {
  const cases: [string, string, number, number, RegExp][] = [
    ['an empty file', '', 1, 1, /^the file is empty; it may be half-written/],
    ['only whitespace', '  \n', 1, 1, /the file is empty/],
    ['not PHP', 'hello', 1, 1, /expected the file to start with `<\?php`, found `hello`/],
    ['JSON', '{"a": 1}', 1, 1, /start with `<\?php`, found `\{`/],
    ['a short open tag', '<?= 1;', 1, 1, /start with `<\?php`/],
    ['<?php glued to a word', '<?phpreturn 1;', 1, 1, /start with `<\?php`/],
    [
      'no return',
      '<?php\n// nothing\n',
      3,
      1,
      /the file ends before its `return` statement; it may be half-written/,
    ],
    [
      'a close tag before any return',
      '<?php ?>',
      1,
      7,
      /expected a `return \[\.\.\.\];` statement, found `\?>`/,
    ],
    [
      'a variable assignment',
      '<?php\n$x = 1;\nreturn $x;',
      2,
      1,
      /expected a `return \[\.\.\.\];` statement, found `\$`.*never runs PHP code/,
    ],
    ['a function call statement', '<?php\nfoo();', 2, 1, /found `foo`/],
    ['an attribute at the top', '<?php\n#[A]\nreturn 1;', 2, 1, /found `#`/],
    [
      'a statement without ;',
      '<?php declare(strict_types=1) return 1;',
      1,
      31,
      /expected `;` to end the `declare` statement, found `return`/,
    ],
    [
      'a statement cut off',
      '<?php declare(strict_types=1',
      1,
      29,
      /the file ends inside the `\(` that opens at line 1, column 14/,
    ],
    [
      'cut off mid-array',
      "<?php\nreturn [\n  'a' => 1,\n  'b' => [\n    2,",
      5,
      7,
      /^the file ends inside the array that opens at line 4, column 10; it may be half-written: wait for the write to finish or fix the file$/,
    ],
    [
      'cut off after =>',
      "<?php\nreturn ['a' =>",
      2,
      15,
      /the array that opens at line 2, column 8/,
    ],
    [
      'cut off mid-string',
      "<?php\nreturn [\n  'a' => 'htt",
      3,
      14,
      /the file ends inside the string that opens at line 3, column 10/,
    ],
    [
      'cut off mid double-quoted string',
      '<?php return ["a',
      1,
      17,
      /the string that opens at line 1, column 15/,
    ],
    [
      'cut off with CRLF',
      "<?php\r\nreturn [\r\n  'a' => 'x\r\n",
      4,
      1,
      /the string that opens at line 3, column 10/,
    ],
    [
      'an unterminated comment',
      '<?php\nreturn [\n/* x\n',
      4,
      1,
      /the file ends inside the comment that opens at line 3, column 1/,
    ],
    [
      'an unterminated heredoc',
      '<?php return [<<<EOT\nabc\n',
      3,
      1,
      /the heredoc that opens at line 1, column 15/,
    ],
    [
      'cut off inside a call',
      '<?php return [foo(1, 2',
      1,
      23,
      /the `\(` that opens at line 1, column 18/,
    ],
    [
      'missing ; at the end',
      '<?php\nreturn [1]\n',
      3,
      1,
      /^expected `;` after the returned value, but the file ends; it may be half-written/,
    ],
    [
      'missing ; before more code',
      '<?php\nreturn [1]\nreturn 2;',
      3,
      1,
      /expected `;` after the value at line 2, column 8, found `return`/,
    ],
    ['return without a value', '<?php return;', 1, 13, /expected a value, found `;`/],
    ['return cut off', '<?php return', 1, 13, /expected a value, but the file ends/],
    ['two values', '<?php return 1, 2;', 1, 15, /expected `;` after the returned value, found `,`/],
    [
      'a missing comma',
      "<?php return ['a' => 1\n 'b' => 2];",
      2,
      2,
      /expected `,` or `\]` after the value at line 1, column 22, found a string/,
    ],
    [
      'a missing comma in array()',
      '<?php return array(1 2);',
      1,
      22,
      /expected `=>`, `,` or `\)` after the value at line 1, column 20, found a number/,
    ],
    [
      'a double arrow',
      "<?php return ['a' => 'b' => 'c'];",
      1,
      26,
      /expected `,` or `\]` after the value at line 1, column 22, found `=>`/,
    ],
    ['an empty element', '<?php return [1,,2];', 1, 17, /expected a value, found `,`/],
    ['a missing value', "<?php return ['a' => ];", 1, 22, /expected a value, found `\]`/],
    ['a missing key', '<?php return [=> 1];', 1, 15, /expected a value, found `=>`/],
    [
      'the wrong closer',
      '<?php return [1, 2);',
      1,
      19,
      /expected `,` or `\]` after the array entry, found `\)`/,
    ],
    [
      'a mismatched bracket in an expression',
      '<?php return [foo(1]];',
      1,
      20,
      /expected `\)` to close the `\(` at line 1, column 18, found `\]`/,
    ],
    ['an invalid octal number', '<?php return 08;', 1, 14, /`08` is not a valid PHP number/],
    [
      'a bad \\u escape',
      String.raw`<?php return "\u{zz}";`,
      1,
      15,
      /`\\u\{\.\.\.\}` escape needs hexadecimal digits/,
    ],
    [
      'a \\u escape past Unicode',
      String.raw`<?php return "\u{110000}";`,
      1,
      15,
      /beyond the last Unicode code point/,
    ],
    ['an array as a key', '<?php return [[1] => 2];', 1, 15, /an array cannot be an array key/],
    [
      'a float key out of range',
      '<?php return [1e300 => 2];',
      1,
      15,
      /float beyond the integer range/,
    ],
    [
      'text after ?>',
      '<?php return 1; ?>\nhello',
      2,
      1,
      /expected nothing after the closing `\?>`/,
    ],
    [
      'code after the return',
      '<?php return 1; foo();',
      1,
      17,
      /expected the end of the file after the `return` statement, found `foo`/,
    ],
    [
      'a control character',
      '<?php return [1\u0001];',
      1,
      16,
      /found the control character U\+0001/,
    ],
    [
      'a no-break space',
      "<?php return ['a' =>\u00a0'b'];",
      1,
      21,
      /found the character U\+00A0, a space PHP does not accept between tokens: replace it by a normal space/,
    ],
    [
      'a huge decimal literal',
      `<?php return [${'9'.repeat(100_000)} 1];`,
      1,
      100_016,
      /expected `=>`, `,` or `\]` after the value at line 1, column 15/,
    ],
    ['a column counted in characters', "<?php return ['😀' => 1 2];", 1, 24, /found a number/],
    ['?> inside brackets', '<?php return [f(?>)];', 1, 17, /found `\?>`/],
  ];
  test.each(cases)('%s', (_name, text, line, column, message) => {
    const error = caught(text);
    expect(error.code).toBe('E_SOURCE');
    expect(error.where).toEqual({ file: FILE, line, column });
    const prefix = `${FILE}:${line}:${column}: `;
    expect(error.message.startsWith(prefix)).toBe(true);
    expect(error.message.slice(prefix.length)).toMatch(message);
  });

  test('64 nested arrays read, 65 are refused', () => {
    const nested = (depth: number): string =>
      `<?php return ${'['.repeat(depth)}${']'.repeat(depth)};`;
    expect(parsePhpConfig(nested(64), FILE).kind).toBe('array');
    expect(caught(nested(65)).message).toMatch(/the arrays nest deeper than 64 levels/);
    expect(caught(nested(100_000)).code).toBe('E_SOURCE');
  });

  test('deep brackets inside an expression are refused, not a stack overflow', () => {
    expect(caught(`<?php return f${'('.repeat(100_000)}${')'.repeat(100_000)};`).message).toMatch(
      /nests deeper than 64 levels/,
    );
    expect(caught(`<?php return ${'('.repeat(100_000)}1${')'.repeat(100_000)};`).code).toBe(
      'E_SOURCE',
    );
    expect(caught(`<?php return ${'"{$a['.repeat(10_000)}`).code).toBe('E_SOURCE');
    expect(caught(`<?php return ${'"{$x'.repeat(10_000)}`).message).toMatch(
      /nests deeper than 64 levels/,
    );
  });
});
