/** Incident times in every form the trace command accepts, with a fixed local zone. */
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { TnatError } from '../../src/errors.js';
import { localZone } from '../../src/system/local-zone.js';
import {
  formatOffset,
  parseIncidentTime,
  type LocalZone,
  type WallClockTime,
} from '../../src/trace/time.js';
import { caught } from '../helpers/caught.js';

/** CET/CEST by month only: enough to show that the offset is asked for the given date. */
const TEST_ZONE: LocalZone = {
  name: 'Test/Central',
  offsetsAt: (time: WallClockTime) => [time.month >= 4 && time.month <= 10 ? 120 : 60],
};

// The seed's example: `date +%s -d '2020/12/26 13:37:42'` on a CET server gives 1608986262.
const SEED = 1608986262;

describe('parseIncidentTime', () => {
  test.each([
    ['unix seconds', '1608986262', SEED, 'unix seconds', false],
    ['unix seconds with a fraction', '1608986262.75', SEED, 'unix seconds', false],
    ['date -d @ form', '@1608986262', SEED, 'unix seconds', false],
    [
      'the seed form, local winter time',
      '2020/12/26 13:37:42',
      SEED,
      'Test/Central (+01:00)',
      true,
    ],
    [
      'ISO without zone, local winter time',
      '2020-12-26T13:37:42',
      SEED,
      'Test/Central (+01:00)',
      true,
    ],
    ['ISO with a space and no zone', '2020-12-26 13:37:42', SEED, 'Test/Central (+01:00)', true],
    [
      'ISO without zone, local summer time',
      '2020-07-01 14:00:00',
      1593604800,
      'Test/Central (+02:00)',
      true,
    ],
    ['ISO Z', '2020-12-26T12:37:42Z', SEED, 'UTC', false],
    ['ISO lower-case z with fraction', '2020-12-26t12:37:42.999z', SEED, 'UTC', false],
    ['ISO +01:00', '2020-12-26 13:37:42+01:00', SEED, '+01:00', false],
    ['ISO +0100 after a space', '2020-12-26 13:37:42 +0100', SEED, '+01:00', false],
    ['ISO -05', '2020-12-26T07:37:42-05', SEED, '-05:00', false],
    ['ISO +05:30', '2020-12-26T18:07:42+05:30', SEED, '+05:30', false],
    ['explicit +00:00', '2020-12-26T12:37:42+00:00', SEED, 'UTC', false],
    ['a trailing UTC', '2020-12-26 12:37:42 UTC', SEED, 'UTC', false],
    ['surrounding blanks', '  2020-12-26T12:37:42Z \n', SEED, 'UTC', false],
  ] as const)('%s: %j', (_, text, unixSeconds, zone, zoneAssumed) => {
    const time = parseIncidentTime(text, TEST_ZONE);
    expect(time).toEqual({
      given: text.trim(),
      unixSeconds,
      utc: new Date(unixSeconds * 1000).toISOString().replace('.000Z', 'Z'),
      zone,
      zoneAssumed,
    });
  });

  test.each([
    ['words', 'yesterday at noon'],
    ['no seconds', '2020-12-26 13:37'],
    ['a short number', '16089862'],
    ['a 30th of February', '2020-02-30 12:00:00'],
    ['hour 24', '2020-12-26 24:00:00'],
    ['month 13', '2020-13-01 12:00:00'],
    ['an offset of a day', '2020-12-26T12:00:00+24:00'],
    ['offset minutes above 59', '2026-05-28T21:00:00+05:75'],
    ['offset minutes above 59 without a colon', '2026-05-28T21:00:00-0160'],
    ['an offset beyond +14:00', '2020-12-26T12:00:00+14:01'],
    ['an offset beyond -14:00', '2020-12-26T12:00:00-15'],
    ['a year before 1970 (Date.UTC reads 0099 as 1999)', '0099-01-01 00:00:00Z'],
    ['a year before 1970', '1969-12-31T23:59:59Z'],
    ['a moment before 1970 by its offset', '1970-01-01T00:30:00+01:00'],
    ['mixed separators', '2020-12/26 12:00:00'],
  ])('refuses %s with one sentence naming the forms', (_, text) => {
    let error: unknown;
    try {
      parseIncidentTime(text, TEST_ZONE);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(TnatError);
    expect((error as TnatError).code).toBe('E_USAGE');
    expect((error as TnatError).message).toContain(`"${text}"`);
    expect((error as TnatError).message).toContain('2020/12/26 13:37:42, or unix seconds');
    expect((error as TnatError).message.split('\n')).toHaveLength(1);
  });

  test.each([
    ['the largest offsets', '2020-12-27T02:37:42+14:00', SEED],
    ['the largest offsets', '2020-12-25T22:37:42-14:00', SEED],
    ['the first second of 1970', '1970-01-01T00:00:00Z', 0],
    ['the first second of 1970 by its offset', '1970-01-01T01:00:00+01:00', 0],
  ])('reads %s: %j', (_, text, unixSeconds) => {
    expect(parseIncidentTime(text, TEST_ZONE).unixSeconds).toBe(unixSeconds);
  });

  test('a leap day is a date', () => {
    expect(parseIncidentTime('2020-02-29T00:00:00Z', TEST_ZONE).utc).toBe('2020-02-29T00:00:00Z');
  });
});

describe('formatOffset', () => {
  test.each([
    [0, '+00:00'],
    [60, '+01:00'],
    [330, '+05:30'],
    [-300, '-05:00'],
    [-570, '-09:30'],
  ])('%d minutes -> %s', (minutes, text) => {
    expect(formatOffset(minutes)).toBe(text);
  });
});

describe('localZone (Intl, by zone name)', () => {
  const amsterdam = localZone('Europe/Amsterdam');
  test.each([
    ['winter', '2020-12-26 13:37:42', '2020-12-26T12:37:42Z'],
    ['summer', '2020-07-01 12:00:00', '2020-07-01T10:00:00Z'],
    ['the hour before the repeated one', '2023-10-29 01:59:59', '2023-10-28T23:59:59Z'],
    ['the hour after the repeated one', '2023-10-29 03:00:00', '2023-10-29T02:00:00Z'],
    ['the hour before the skipped one', '2023-03-26 01:59:59', '2023-03-26T00:59:59Z'],
    ['the hour after the skipped one', '2023-03-26 03:00:00', '2023-03-26T01:00:00Z'],
    ['the repeated hour with its offset', '2023-10-29 02:30:00+01:00', '2023-10-29T01:30:00Z'],
  ])('%s', (_, text, utc) => {
    expect(parseIncidentTime(text, amsterdam).utc).toBe(utc);
  });

  // A zone-less time in these hours is two moments or none: picking one would trace the wrong
  // moment with confidence, so it is refused and the offset asked for.
  test.each([
    [
      'the hour repeated when summer time ends',
      '2023-10-29 02:30:00',
      '"2023-10-29 02:30:00" happens twice in Europe/Amsterdam, at +02:00 and again at +01:00: give the offset (2023-10-29T02:30:00+02:00 or 2023-10-29T02:30:00+01:00) or the time in UTC',
    ],
    [
      'its first second',
      '2023/10/29 02:00:00',
      '"2023/10/29 02:00:00" happens twice in Europe/Amsterdam, at +02:00 and again at +01:00: give the offset (2023-10-29T02:00:00+02:00 or 2023-10-29T02:00:00+01:00) or the time in UTC',
    ],
    [
      'the hour skipped when summer time starts',
      '2023-03-26 02:30:00',
      '"2023-03-26 02:30:00" never happens in Europe/Amsterdam, whose clocks go from +01:00 to +02:00 over it: give the offset (2023-03-26T02:30:00+01:00 or 2023-03-26T02:30:00+02:00) or the time in UTC',
    ],
  ])('refuses %s with one sentence', (_, text, message) => {
    const error = caught(() => parseIncidentTime(text, amsterdam));
    expect(error).toBeInstanceOf(TnatError);
    expect(error).toMatchObject({ code: 'E_USAGE', message });
  });

  test('a TZ of a zone name with a colon or a path into zoneinfo names that zone', () => {
    const july = '2020-07-01 12:00:00';
    // A link such as /etc/localtime, into a zoneinfo directory (which need not exist).
    const link = join(mkdtempSync(join(tmpdir(), 'tnat-zone-')), 'localtime');
    symlinkSync('/usr/share/zoneinfo/Europe/Amsterdam', link);
    try {
      for (const tz of [':Europe/Amsterdam', ':/usr/share/zoneinfo/Europe/Amsterdam', `:${link}`]) {
        expect(localZone(tz).name).toBe('Europe/Amsterdam');
        expect(parseIncidentTime(july, localZone(tz)).utc).toBe('2020-07-01T10:00:00Z');
      }
    } finally {
      rmSync(dirname(link), { recursive: true });
    }
    expect(
      localZone('Asia/Kolkata').offsetsAt({
        year: 2020,
        month: 1,
        day: 1,
        hour: 0,
        minute: 0,
        second: 0,
      }),
    ).toEqual([330]);
  });

  // These were read in the process's zone (UTC here) and said to be that zone: the answer of a
  // server whose clocks run on CET was an hour or two off, and said nothing.
  test.each(['CET-1CEST,M3.5.0,M10.5.0/3', 'Nope/Nowhere', ':/no/such/localtime'])(
    'TZ=%s names no zone this tool knows: a time without a zone is refused, one with is read',
    (tz) => {
      const zone = localZone(tz);
      const error = caught(() => parseIncidentTime('2026-07-01 12:00:00', zone));
      expect(error).toBeInstanceOf(TnatError);
      expect(error).toMatchObject({
        code: 'E_USAGE',
        message: `"2026-07-01 12:00:00" has no zone, and the server's zone is unknown (TZ=${tz}): give the offset (2026-07-01T12:00:00+HH:MM) or the time in UTC, or set TZ to a zone name such as Europe/Amsterdam`,
      });
      expect(parseIncidentTime('2026-07-01T12:00:00+02:00', zone).utc).toBe('2026-07-01T10:00:00Z');
    },
  );
});
