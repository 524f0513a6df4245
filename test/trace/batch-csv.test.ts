/**
 * The batch's CSV reader and writer against RFC 4180's cases: quoted commas, quotes and line
 * breaks, CRLF, a byte order mark, blank lines, and the line a record starts on, which the
 * messages about unreadable rows name. A property: what the writer writes, the reader reads back.
 */
import fc from 'fast-check';
import { csvField, csvRecord, parseCsv } from '../../src/trace/batch-csv.js';

const read = (text: string) =>
  parseCsv(text).map(({ line, fields, problem }) => ({ line, fields, problem }));

describe('parseCsv', () => {
  test.each([
    [
      'plain',
      'a,b,c\n1,2,3\n',
      [
        ['a', 'b', 'c'],
        ['1', '2', '3'],
      ],
    ],
    [
      'no final line break',
      'a,b\n1,2',
      [
        ['a', 'b'],
        ['1', '2'],
      ],
    ],
    ['empty fields', ',a,,\n', [['', 'a', '', '']]],
    ['a quoted comma', 'a,"b,c"\n', [['a', 'b,c']]],
    ['doubled quotes', '"say ""hi""",x\n', [['say "hi"', 'x']]],
    ['a quoted LF and CRLF', '"1\n2","3\r\n4"\r\nz\r\n', [['1\n2', '3\r\n4'], ['z']]],
    ['lone CRs end lines too', 'a\rb\r', [['a'], ['b']]],
    ['a byte order mark', '\ufefftime,port\n', [['time', 'port']]],
    ['spaces are kept', ' a , b \n', [[' a ', ' b ']]],
    ['a quoted empty field', '"",x\n', [['', 'x']]],
  ])('%s', (_, text, records) => {
    expect(parseCsv(text).map((record) => record.fields)).toEqual(records);
    expect(parseCsv(text).every((record) => record.problem === undefined)).toBe(true);
  });

  test('blank lines are skipped and every record names the line it starts on', () => {
    expect(
      read('h\r\n\r\n"x\r\ny"\r\n\n  \nlast\n').map((record) => [record.line, record.fields]),
    ).toEqual([
      [1, ['h']],
      [3, ['x\r\ny']],
      [7, ['last']],
    ]);
  });

  test('a quote out of place spoils only its record', () => {
    expect(read('a,b"c\nd,"e"f,g\nh\n')).toEqual([
      {
        line: 1,
        fields: ['a', 'b"c'],
        problem:
          'line 1 has a quote inside a field that does not start with one: put the field in quotes and write the quote twice ("")',
      },
      {
        line: 2,
        fields: ['d', 'e', 'g'],
        problem:
          'line 2 has text after the closing quote of a field: a quote inside a quoted field is written twice ("")',
      },
      { line: 3, fields: ['h'], problem: undefined },
    ]);
  });

  test('a quote never closed takes the rest of the text and says where it began', () => {
    expect(read('a\n"b,c\nd\n')).toEqual([
      { line: 1, fields: ['a'], problem: undefined },
      {
        line: 2,
        fields: ['b,c\nd\n'],
        problem: 'the quoted field that starts on line 2 is never closed',
      },
    ]);
  });
});

describe('the writer', () => {
  test('quotes what needs it, and only that', () => {
    expect(['a', 'b,c', 'say "hi"', 'two\nlines', ' lead', 'trail ', ''].map(csvField)).toEqual([
      'a',
      '"b,c"',
      '"say ""hi"""',
      '"two\nlines"',
      '" lead"',
      '"trail "',
      '',
    ]);
    expect(csvRecord(['x', 'y,z'], '\r\n')).toBe('x,"y,z"\r\n');
  });

  test('reads back what it wrote', () => {
    const field = fc.string({ unit: fc.constantFrom('a', ' ', ',', '"', '\n', '\r', 'é', '|') });
    const records = fc.array(fc.array(field, { minLength: 2, maxLength: 5 }), { maxLength: 8 });
    fc.assert(
      fc.property(records, fc.constantFrom('\n', '\r\n'), (list, lineEnd) => {
        const text = list.map((fields) => csvRecord(fields, lineEnd)).join('');
        expect(parseCsv(text).map((record) => record.fields)).toEqual(list);
      }),
      { numRuns: 300 },
    );
  });
});
