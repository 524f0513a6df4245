/**
 * Incident times in the forms abuse reports use, as unix seconds. A time without a zone is read
 * in the server's local zone, which is passed in (`LocalZone`) so this stays pure; the result
 * says which zone was assumed, because a report's "13:37" may well have meant UTC.
 */
import { TnatError } from '../errors.js';

/** A wall-clock time; month 1-12. */
export interface WallClockTime {
  readonly year: number;
  readonly month: number;
  readonly day: number;
  readonly hour: number;
  readonly minute: number;
  readonly second: number;
}

export interface LocalZone {
  /** How the output names it, e.g. `Europe/Amsterdam`. */
  readonly name: string;
  /**
   * Minutes east of UTC at which the zone's clocks show that wall-clock time (+60 for 13:37
   * CET): one offset; two, the first occurrence's first, in the hour repeated when summer time
   * ends; none in the hour skipped when it starts; undefined when the zone is unknown (a TZ
   * this tool cannot read).
   */
  readonly offsetsAt: (time: WallClockTime) => readonly number[] | undefined;
}

/** UTC as a zone: how eduVPN 3.x stores every time, so a stored time without an offset is UTC. */
export const UTC_ZONE: LocalZone = { name: 'UTC', offsetsAt: () => [0] };

export interface IncidentTime {
  /** The text as given. */
  readonly given: string;
  readonly unixSeconds: number;
  /** The same moment in UTC, `2020-12-26T12:37:42Z`. */
  readonly utc: string;
  /** The zone the text was read in: `UTC`, `+01:00`, `Europe/Amsterdam (+01:00)` or `unix seconds`. */
  readonly zone: string;
  /** The text had no zone, so the server's local zone was assumed. */
  readonly zoneAssumed: boolean;
}

export const TIME_FORMS =
  'ISO 8601 with or without a zone (2020-12-26T13:37:42Z, 2020-12-26 13:37:42+01:00), ' +
  '2020/12/26 13:37:42, or unix seconds (1608986262)';

/** Unix seconds of the years 1973 to 5138: shorter numbers are more likely a typo than a time. */
const UNIX_SECONDS = /^@?(\d{9,11})(?:\.\d+)?$/;
const DATE_TIME =
  /^(\d{4})([-/])(\d{1,2})\2(\d{1,2})(?:[Tt]|\s+)(\d{1,2}):(\d{2}):(\d{2})(?:[.,]\d+)?\s*(Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)?$/i;

/** `2020-12-26T12:37:42Z` for unix seconds. */
export function formatUtc(unixSeconds: number): string {
  return new Date(unixSeconds * 1000).toISOString().replace('.000Z', 'Z');
}

export function formatOffset(minutes: number): string {
  const sign = minutes < 0 ? '-' : '+';
  const absolute = Math.abs(minutes);
  const hours = String(Math.floor(absolute / 60)).padStart(2, '0');
  return `${sign}${hours}:${String(absolute % 60).padStart(2, '0')}`;
}

function usageError(text: string, why: string): TnatError {
  return new TnatError('E_USAGE', `"${text}" ${why}: give the time as ${TIME_FORMS}`);
}

/** The largest offset from UTC any zone uses (Pacific/Kiritimati's +14:00). */
export const MAX_OFFSET = 14 * 60;

/** Minutes east of UTC of `Z`, `UTC`, `+01:00`, `+0100` or `+01` in `given`. */
function offsetOf(zone: string, given: string): number {
  if (/^(Z|UTC|GMT)$/i.test(zone)) return 0;
  const sign = zone.startsWith('-') ? -1 : 1;
  const digits = zone.slice(1).replace(':', '');
  const minutes = Number(digits.slice(2) || '0');
  const offset = Number(digits.slice(0, 2)) * 60 + minutes;
  if (minutes > 59 || offset > MAX_OFFSET) {
    throw usageError(given, `has the zone offset ${zone}, which no zone uses (at most ±14:00)`);
  }
  return sign * offset;
}

function isValid(time: WallClockTime): boolean {
  const daysInMonth = new Date(Date.UTC(time.year, time.month, 0)).getUTCDate();
  return (
    time.month >= 1 &&
    time.month <= 12 &&
    time.day >= 1 &&
    time.day <= daysInMonth &&
    time.hour <= 23 &&
    time.minute <= 59 &&
    time.second <= 59
  );
}

/** Seconds since the epoch of a wall-clock time read as if it were UTC. */
export function wallClockAsUtc(time: WallClockTime): number {
  return Date.UTC(time.year, time.month - 1, time.day, time.hour, time.minute, time.second) / 1000;
}

/** `2020-12-26T13:37:42`: the wall-clock time in the ISO form an offset can be added to. */
function isoWallClock(time: WallClockTime): string {
  return formatUtc(wallClockAsUtc(time)).slice(0, -1);
}

/**
 * Why a zone-less time that is two moments in the local zone, or none, is refused: tracing one
 * of two moments would name a client with confidence that may not have held the port.
 */
function notOneMomentError(given: string, time: WallClockTime, local: LocalZone): TnatError {
  const wall = isoWallClock(time);
  const offsets = local.offsetsAt(time);
  if (offsets === undefined) {
    return new TnatError(
      'E_USAGE',
      `"${given}" has no zone, and the server's zone is ${local.name}: give the offset (${wall}+HH:MM) or the time in UTC, or set TZ to a zone name such as Europe/Amsterdam`,
    );
  }
  const twice = offsets.length > 1;
  // Neither offset fits in the skipped hour: those of half a day before and after name it.
  const around = twice
    ? offsets
    : [-43200, 43200].flatMap((shift) => {
        const date = new Date((wallClockAsUtc(time) + shift) * 1000);
        const shifted = local.offsetsAt({
          year: date.getUTCFullYear(),
          month: date.getUTCMonth() + 1,
          day: date.getUTCDate(),
          hour: date.getUTCHours(),
          minute: date.getUTCMinutes(),
          second: date.getUTCSeconds(),
        });
        return shifted ?? [];
      });
  const [first = 0, second = 0] = around.map((offset) => formatOffset(offset));
  const what = twice
    ? `happens twice in ${local.name}, at ${first} and again at ${second}`
    : `never happens in ${local.name}, whose clocks go from ${first} to ${second} over it`;
  return new TnatError(
    'E_USAGE',
    `"${given}" ${what}: give the offset (${wall}${first} or ${wall}${second}) or the time in UTC`,
  );
}

/**
 * Reads an incident time. Fractions of a second are dropped: archives and portal logs count
 * whole seconds. A time without a zone in the hour that repeats when daylight saving time ends,
 * or in the one skipped when it starts, is refused; a time with a zone is never in doubt.
 */
export function parseIncidentTime(text: string, local: LocalZone): IncidentTime {
  const given = text.trim();
  const unix = UNIX_SECONDS.exec(given);
  if (unix?.[1]) {
    const unixSeconds = Number(unix[1]);
    return {
      given,
      unixSeconds,
      utc: formatUtc(unixSeconds),
      zone: 'unix seconds',
      zoneAssumed: false,
    };
  }
  const match = DATE_TIME.exec(given);
  if (!match) throw usageError(given, 'is not a time this tool reads');
  const [, year, , month, day, hour, minute, second, zone] = match;
  const time: WallClockTime = {
    year: Number(year),
    month: Number(month),
    day: Number(day),
    hour: Number(hour),
    minute: Number(minute),
    second: Number(second),
  };
  if (!isValid(time)) throw usageError(given, 'is not a valid date and time');
  // Date.UTC reads the years 0 to 99 as 1900 to 1999; no ruleset is older than 1970 anyway.
  if (time.year < 1970) throw usageError(given, 'is before 1970');
  const zoneAssumed = zone === undefined;
  const offsets = zoneAssumed ? local.offsetsAt(time) : [offsetOf(zone, given)];
  const [offset] = offsets ?? [];
  if (offset === undefined || offsets?.length !== 1) throw notOneMomentError(given, time, local);
  const unixSeconds = wallClockAsUtc(time) - offset * 60;
  if (unixSeconds < 0) throw usageError(given, 'is before 1970');
  const zoneText = zoneAssumed
    ? `${local.name} (${formatOffset(offset)})`
    : offset === 0
      ? 'UTC'
      : formatOffset(offset);
  return { given, unixSeconds, utc: formatUtc(unixSeconds), zone: zoneText, zoneAssumed };
}
