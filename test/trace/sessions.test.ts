/** Matching stored session times to a moment, whatever form the database stored them in. */
import { sessionsAt, storedTime, type LogRow } from '../../src/trace/sessions.js';
import type { LocalZone } from '../../src/trace/time.js';

const PLUS_TWO: LocalZone = { name: 'Test/PlusTwo', offsetAt: () => 120 };

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
