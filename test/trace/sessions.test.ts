/** Matching stored session times to a moment, whatever form the database stored them in. */
import { localZone } from '../../src/system/local-zone.js';
import { sessionsAt, storedTime, type LogRow } from '../../src/trace/sessions.js';
import type { LocalZone } from '../../src/trace/time.js';

const PLUS_TWO: LocalZone = { name: 'Test/PlusTwo', offsetsAt: () => [120] };

describe('storedTime', () => {
  test.each([
    ['3.x UTC text', '2023-09-20T12:34:56+00:00', 1695213296],
    ['2.x text without zone, read as local', '2023-09-20 14:34:56', 1695213296],
    ['unix seconds', '1695213296', 1695213296],
    ['unreadable', 'last tuesday', undefined],
  ])('%s', (_, text, expected) => {
    expect(storedTime(text, PLUS_TWO)).toBe(expected);
  });
});

describe('sessionsAt', () => {
  const row = (connectedAt: string, disconnectedAt: string | null): LogRow => ({
    userId: 'u',
    profileId: 'p',
    connectionId: 'c',
    vpnProto: null,
    connectedAt,
    disconnectedAt,
  });
  const at = 1695213296; // 2023-09-20T12:34:56Z
  test.each([
    ['open session started before', row('2023-09-20T12:00:00+00:00', null), true],
    ['started within the margin after', row('2023-09-20T12:35:01+00:00', null), true],
    ['started after the margin', row('2023-09-20T12:35:02+00:00', null), false],
    [
      'ended within the margin before',
      row('2023-09-20T12:00:00+00:00', '2023-09-20T12:34:51+00:00'),
      true,
    ],
    [
      'ended before the margin',
      row('2023-09-20T12:00:00+00:00', '2023-09-20T12:34:50+00:00'),
      false,
    ],
    ['unreadable times cannot be ruled out', row('soon', 'later'), true],
  ])('%s', (_, session, kept) => {
    expect(sessionsAt([session], at, 5, PLUS_TWO)).toHaveLength(kept ? 1 : 0);
  });
});

describe('2.x times the clocks showed twice (Europe/Amsterdam, 2023-10-29 02:00-02:59)', () => {
  const amsterdam = localZone('Europe/Amsterdam');
  const row = (connectedAt: string, disconnectedAt: string | null): LogRow => ({
    userId: 'u',
    profileId: null,
    connectionId: 'cn',
    vpnProto: null,
    connectedAt,
    disconnectedAt,
  });
  const utc = (iso: string) => Date.parse(iso) / 1000;

  test('are no one moment unless the first or last occurrence is asked for', () => {
    expect(storedTime('2023-10-29 02:30:00', amsterdam)).toBeUndefined();
    expect(storedTime('2023-10-29 02:30:00', amsterdam, 'first')).toBe(utc('2023-10-29T00:30Z'));
    expect(storedTime('2023-10-29 02:30:00', amsterdam, 'last')).toBe(utc('2023-10-29T01:30Z'));
  });

  test.each([
    [
      'ended at the second 02:30, traced at 01:20Z',
      row('2023-10-28 20:00:00', '2023-10-29 02:30:00'),
      '2023-10-29T01:20Z',
      true,
    ],
    [
      'ended at either 02:30, traced at 01:40Z',
      row('2023-10-28 20:00:00', '2023-10-29 02:30:00'),
      '2023-10-29T01:40Z',
      false,
    ],
    [
      'started at the first 02:30, traced at 00:40Z',
      row('2023-10-29 02:30:00', null),
      '2023-10-29T00:40Z',
      true,
    ],
    [
      'started at either 02:30, traced the day before',
      row('2023-10-29 02:30:00', null),
      '2023-10-28T12:00Z',
      false,
    ],
  ])('a session is taken at its longest: %s', (_, session, at, kept) => {
    expect(sessionsAt([session], utc(at), 5, amsterdam)).toHaveLength(kept ? 1 : 0);
  });
});

describe('2.x times in a zone this tool does not know (TZ=CET-1CEST,M3.5.0,M10.5.0/3)', () => {
  const unknown = localZone('CET-1CEST,M3.5.0,M10.5.0/3');
  const noon = Date.parse('2023-09-20T12:00:00Z') / 1000;

  test('are no one moment, but lie within 14 hours of the wall-clock time read as UTC', () => {
    expect(storedTime('2023-09-20 12:00:00', unknown)).toBeUndefined();
    expect(storedTime('2023-09-20 12:00:00', unknown, 'first')).toBe(noon - 14 * 3600);
    expect(storedTime('2023-09-20 12:00:00', unknown, 'last')).toBe(noon + 14 * 3600);
  });
});
