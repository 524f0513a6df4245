/**
 * `trace --batch` in-process against five archives: every row's answer is the one a single
 * `trace` gives (random rows near and between switches, before the first archive, on addresses
 * that are not ours, in no block, and rows that cannot be read), the CSV and JSON lines forms,
 * and the exit status of the worst row.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { csvRecord, parseCsv } from '../../src/trace/batch-csv.js';
import {
  A,
  B,
  BLOCK_SIZE,
  BLOCKS,
  C,
  createSite,
  FIRST_PORT,
  SWITCHES,
  T0,
  type Site,
} from './trace-batch-site.js';

const AMSTERDAM = { TZ: 'Europe/Amsterdam' };

interface FeedRow {
  readonly time: string;
  readonly address: string;
  readonly port: string;
  readonly proto: string;
  readonly ticket: string;
}

/** The moment as one of the forms `trace --at` reads (Amsterdam is +02:00 in September). */
function timeText(seconds: number, form: number): string {
  const utc = new Date(seconds * 1000).toISOString().slice(0, 19);
  const local = new Date((seconds + 7200) * 1000).toISOString().slice(0, 19);
  switch (form) {
    case 0:
      return String(seconds);
    case 1:
      return `${utc}Z`;
    case 2:
      return `${local.replace('T', ' ')}+02:00`;
    case 3:
      return local.replace('T', ' ');
    default:
      return local.replace('T', ' ').replaceAll('-', '/');
  }
}

const LAST = SWITCHES.at(-1) ?? T0;
const moment = fc.oneof(
  // Near a switch, inside and just outside its window.
  fc.tuple(fc.constantFrom(...SWITCHES), fc.integer({ min: -10, max: 10 })).map(([s, d]) => s + d),
  // Between switches.
  fc.tuple(fc.constantFrom(...SWITCHES), fc.integer({ min: 20, max: 580 })).map(([s, d]) => s + d),
  // Before the first archive, long before and within seconds.
  fc.integer({ min: T0 - 7200, max: T0 - 20 }),
  fc.integer({ min: T0 - 4, max: T0 + 4 }),
  fc.integer({ min: LAST + 600, max: LAST + 7200 }),
);
const goodRow: fc.Arbitrary<FeedRow> = fc.record({
  time: fc.tuple(moment, fc.integer({ min: 0, max: 4 })).map(([at, form]) => timeText(at, form)),
  address: fc.constantFrom(A, A, A, B, C, ''),
  port: fc
    .oneof(
      fc.integer({ min: FIRST_PORT - 8, max: FIRST_PORT + BLOCKS * BLOCK_SIZE + 8 }),
      fc.integer({ min: 1, max: 1024 }),
    )
    .map(String),
  proto: fc.constantFrom('', '', 'tcp', 'udp', 'UDP'),
  ticket: fc.constantFrom('plain', 'with, comma', 'with "quotes"', 'two\nlines', ' spaced '),
});
const badRow: fc.Arbitrary<FeedRow> = fc.constantFrom(
  { time: 'yesterday', address: A, port: '65100', proto: '', ticket: 'bad time' },
  { time: String(T0 + 100), address: A, port: '70000', proto: '', ticket: 'bad port' },
  { time: String(T0 + 100), address: '192.0.2', port: '65100', proto: '', ticket: 'bad address' },
  { time: String(T0 + 100), address: A, port: '65100', proto: 'icmp', ticket: 'bad proto' },
  { time: '2023-02-30 10:00:00', address: A, port: '65100', proto: '', ticket: 'no such day' },
);
const ROWS: FeedRow[] = fc.sample(
  fc.oneof({ arbitrary: goodRow, weight: 12 }, { arbitrary: badRow, weight: 1 }),
  { seed: 15, numRuns: 90 },
);

const COLUMNS = ['ticket', 'time', 'address', 'port', 'proto'] as const;

function csvFeed(rows: readonly FeedRow[], lineEnd = '\n'): string {
  return [
    csvRecord(COLUMNS, lineEnd),
    ...rows.map((row) =>
      csvRecord(
        COLUMNS.map((name) => row[name]),
        lineEnd,
      ),
    ),
  ].join('');
}

function singleArgs(row: FeedRow): string[] {
  return [
    '--at',
    row.time,
    '--port',
    row.port,
    ...(row.address ? ['--address', row.address] : []),
    ...(row.proto ? ['--proto', row.proto] : []),
  ];
}

type Json = Record<string, unknown>;

let site: Site;
let feed: string;
const single: { status: number; json: Json | undefined; stderr: string }[] = [];

beforeAll(async () => {
  site = createSite('tnat-batch-');
  feed = join(site.dir, 'feed.csv');
  writeFileSync(feed, csvFeed(ROWS));
  for (const row of ROWS) {
    const result = await site.run(
      AMSTERDAM,
      'trace',
      '--config',
      site.config,
      ...singleArgs(row),
      '--json',
    );
    single.push({
      status: result.status,
      json: result.status === 2 ? undefined : (JSON.parse(result.stdout) as Json),
      stderr: result.stderr,
    });
  }
});

afterAll(() => {
  site.remove();
});

const batch = (...args: string[]) =>
  site.run(AMSTERDAM, 'trace', '--config', site.config, '--batch', ...args);

function jsonLines(stdout: string): Json[] {
  return stdout
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Json);
}

describe('trace --batch gives every row the answer of a single trace', () => {
  test('the random rows cover every case the equality must hold for', () => {
    const notes = new Set(
      single.flatMap((answer) =>
        ((answer.json?.notes ?? []) as { code: string }[]).map((note) => note.code),
      ),
    );
    for (const code of [
      'near-switch',
      'before-first-archive',
      'address-not-ours',
      'port-in-no-block',
    ])
      expect(notes).toContain(code);
    const statuses = new Set(single.map((answer) => answer.status));
    expect([...statuses].sort()).toEqual([0, 1, 2, 3]);
  });

  test('--json: the object of trace --json, plus row and input, in input order', async () => {
    const result = await batch(feed, '--json');
    expect(result.stderr).toBe('');
    const objects = jsonLines(result.stdout);
    expect(objects).toHaveLength(ROWS.length);
    objects.forEach((object, index) => {
      const row = ROWS[index];
      const expected = single[index];
      if (!row || !expected) throw new Error(`row ${index + 1} missing`);
      const { row: number, input, ...answer } = object;
      expect(number).toBe(index + 1);
      expect(input).toEqual({ ...row });
      if (expected.status === 2) {
        expect(answer.status).toBe('bad-input');
        // The sentence of the single trace, after "FILE line N: ".
        const sentence = expected.stderr.replace(/^traceable-nat: (E_USAGE: )?/, '').trim();
        expect(String(answer.reason)).toMatch(/ line \d+: /);
        expect(String(answer.reason)).toContain(sentence.replace(/^--/, ''));
      } else {
        expect(answer).toEqual(expected.json);
      }
    });
  });

  test('CSV: the input columns unchanged, then status, client, user, profile, notes', async () => {
    const result = await batch(feed);
    const [header, ...records] = parseCsv(result.stdout);
    expect(header?.fields).toEqual([...COLUMNS, 'status', 'client', 'user', 'profile', 'notes']);
    expect(records).toHaveLength(ROWS.length);
    records.forEach((record, index) => {
      const row = ROWS[index];
      const json = single[index]?.json;
      if (!row) throw new Error(`row ${index + 1} missing`);
      const [ticket, time, address, port, proto, status, client, user] = record.fields;
      expect({ ticket, time, address, port, proto }).toEqual({ ...row });
      if (!json) {
        expect(status).toBe('bad-input');
        return;
      }
      expect(status).toBe(json.status);
      const candidates = json.candidates as {
        client: string;
        user: { sessions: { userId: string }[] };
      }[];
      expect(client).toBe(candidates.map((candidate) => candidate.client).join('|'));
      expect(user).toBe(
        [...new Set(candidates.flatMap((c) => c.user.sessions.map((s) => s.userId)))].join('|'),
      );
    });
  });

  test('the exit status is the worst row: bad-input (2), then ambiguous (3), not-found (1), found (0)', async () => {
    const statusOf = (rows: FeedRow[]) => {
      const file = join(site.dir, `part-${rows.length}.csv`);
      writeFileSync(file, csvFeed(rows));
      return batch(file).then((result) => result.status);
    };
    const byStatus = (status: number) =>
      ROWS.filter((_, index) => single[index]?.status === status);
    const [found, notFound, bad, ambiguous] = [0, 1, 2, 3].map(byStatus);
    if (!found || !notFound || !bad || !ambiguous) throw new Error('sample lacks a status');
    expect(await statusOf(found.slice(0, 3))).toBe(0);
    expect(await statusOf([...found.slice(0, 2), ...notFound.slice(0, 1)])).toBe(1);
    expect(
      await statusOf([...notFound.slice(0, 2), ...ambiguous.slice(0, 1), ...found.slice(0, 1)]),
    ).toBe(3);
    expect(
      await statusOf([...ambiguous.slice(0, 2), ...bad.slice(0, 1), ...notFound.slice(0, 1)]),
    ).toBe(2);
    expect(await statusOf([])).toBe(0);
  });
});

describe('trace --batch input forms', () => {
  test('JSON lines: the same answers; numbers for time and port; keys passed through', async () => {
    const rows = ROWS.slice(0, 20);
    const file = join(site.dir, 'feed.jsonl');
    writeFileSync(
      file,
      rows
        .map((row, index) =>
          JSON.stringify({
            ...row,
            ...(index % 2 === 0 && /^\d+$/.test(row.port) ? { port: Number(row.port) } : {}),
            extra: { n: index },
          }),
        )
        .join('\n') + '\n\n',
    );
    const result = await batch(file, '--json');
    const objects = jsonLines(result.stdout);
    expect(objects).toHaveLength(rows.length);
    objects.forEach((object, index) => {
      const { row: number, input, ...answer } = object;
      expect(number).toBe(index + 1);
      expect((input as Json).extra).toEqual({ n: index });
      const expected = single[index];
      if (expected?.json) expect(answer).toEqual(expected.json);
      else expect(answer.status).toBe('bad-input');
    });
    // As CSV: the columns in the order first seen, objects as JSON text.
    const csv = parseCsv((await batch(file)).stdout);
    expect(csv[0]?.fields.slice(0, 6)).toEqual([
      'time',
      'address',
      'port',
      'proto',
      'ticket',
      'extra',
    ]);
    expect(csv[1]?.fields[5]).toBe('{"n":0}');
  });

  test('CRLF, a byte order mark, header names in any case, blank lines and unreadable rows', async () => {
    const file = join(site.dir, 'crlf.csv');
    writeFileSync(
      file,
      '\ufeffTime,Port,Address,Comment\r\n' +
        `${T0 + 100}Z,65100,${A},"not, a time"\r\n` +
        '\r\n' +
        `${T0 + 100},65024,${A},"multi\r\nline"\r\n` +
        `${T0 + 100},65100,${A},bad"quote\r\n` +
        `${T0 + 100},65100\r\n` +
        `${T0 + 100},65024,${A},"ok"\r\n` +
        '{not json but a CSV row},65100,1.2.3.4,x\r\n',
    );
    const result = await batch(file);
    expect(result.status).toBe(2);
    expect(result.stdout.endsWith('\r\n')).toBe(true);
    const [header, ...records] = parseCsv(result.stdout);
    expect(header?.fields).toEqual([
      'Time',
      'Port',
      'Address',
      'Comment',
      'status',
      'client',
      'user',
      'profile',
      'notes',
    ]);
    const cells = records.map((record) => [record.fields[3], record.fields[4], record.fields[8]]);
    expect(cells[0]?.[1]).toBe('bad-input');
    expect(cells[0]?.[2]).toMatch(new RegExp(`^${file} line 2: "${T0 + 100}Z" is not a time`));
    expect(cells[1]?.slice(0, 2)).toEqual(['multi\r\nline', 'found']);
    expect(cells[2]?.[1]).toBe('bad-input');
    expect(cells[2]?.[2]).toContain(`${file} line 6: line 6 has a quote inside a field`);
    expect(cells[3]?.[1]).toBe('bad-input');
    expect(cells[3]?.[2]).toBe(`${file} line 7: it has 2 fields and the header 4`);
    expect(cells[4]?.slice(0, 2)).toEqual(['ok', 'found']);
    expect(cells[5]?.[1]).toBe('bad-input');
    expect(records).toHaveLength(6);
  });

  test('a file without the columns, an empty one, a JSON array and a taken column name are refused', async () => {
    const write = (name: string, text: string) => {
      const file = join(site.dir, name);
      writeFileSync(file, text);
      return file;
    };
    const cases: [string, RegExp][] = [
      [
        write('no-port.csv', 'time,address\n1695197000,192.0.2.1\n'),
        /:1: the header row names no port column/,
      ],
      [write('empty.csv', '\n \n'), /is empty: give a header row and rows/],
      [write('array.json', '[{"time": 1}]'), /is a JSON array: give one JSON object per line/],
      [write('twice.csv', 'time,address,port,time\n'), /:1: the header row names "time" twice/],
      [
        write('case.csv', 'time,address,port,Port\n'),
        /:1: the header row names "port" and "Port", the same column/,
      ],
      [
        write('taken.csv', 'time,address,port,status\n'),
        /has a column "status", which the output adds .*: rename it, or give --json/,
      ],
      [join(site.dir, 'missing.csv'), /--batch .*missing.csv cannot be read \(ENOENT\)/],
    ];
    for (const [file, message] of cases) {
      const result = await batch(file);
      expect({ file, status: result.status, stdout: result.stdout }).toEqual({
        file,
        status: 2,
        stdout: '',
      });
      expect(result.stderr).toMatch(message);
    }
    // A taken name is fine with --json: the input fields sit under "input".
    expect((await batch(join(site.dir, 'taken.csv'), '--json')).status).toBe(0);
  });

  test('--batch with --at or --port is a usage error', async () => {
    const result = await batch(feed, '--at', String(T0), '--port', '65100');
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(
      /--batch takes each row's at, port from the file: leave out --at, --port/,
    );
  });

  test('a zone-less time in the repeated hour is a bad-input row, and the others go on', async () => {
    const file = join(site.dir, 'repeated.csv');
    writeFileSync(
      file,
      `time,address,port\n2023-10-29 02:30:00,${A},65100\n${T0 + 100},${A},65100\n`,
    );
    const result = await batch(file);
    const csv = parseCsv(result.stdout);
    expect(result.status).toBe(2);
    expect(csv[1]?.fields.slice(3, 4)).toEqual(['bad-input']);
    expect(csv[1]?.fields[7]).toContain(
      `${file} line 2: "2023-10-29 02:30:00" happens twice in Europe/Amsterdam`,
    );
    expect(csv[2]?.fields[3]).not.toBe('bad-input');
  });

  test('a zone-less time says which zone it was read in', async () => {
    const file = join(site.dir, 'zone.csv');
    writeFileSync(file, `time,address,port\n2023-09-20 10:05:00,${A},65100\n`);
    const csv = parseCsv((await batch(file)).stdout);
    expect(csv[1]?.fields[7]).toContain(
      "no zone given: read in the server's zone Europe/Amsterdam (+02:00) as 2023-09-20T08:05:00Z",
    );
  });
});
