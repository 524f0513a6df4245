/**
 * The server's local time zone for reading times without a zone (incident times, eduVPN 2.x
 * log times). Built on Intl with an explicit zone name, so `TZ` from the command's environment
 * is honoured without touching the process's own zone.
 */
import { readlinkSync } from 'node:fs';
import type { LocalZone, WallClockTime } from '../trace/time.js';
import { wallClockAsUtc } from '../trace/time.js';

function validZone(name: string | undefined): string | undefined {
  if (!name) return undefined;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: name });
    return name;
  } catch {
    return undefined;
  }
}

/**
 * The zone name in a TZ as glibc reads it (tzset(3)): `NAME` or `:NAME`, or a file, whose name
 * in the zoneinfo directory (or that of the file a link such as /etc/localtime points to) is
 * the zone's. Undefined for a POSIX rule such as `CET-1CEST,M3.5.0,M10.5.0/3`, which Intl
 * cannot read: Node then runs in UTC, unlike `date`.
 */
function zoneNameOf(tz: string): string | undefined {
  const name = tz.replace(/^:/, '');
  const inZoneinfo = (path: string) => /\/zoneinfo\/(.+)$/.exec(path)?.[1];
  if (!name.startsWith('/')) return validZone(name);
  try {
    return validZone(inZoneinfo(name) ?? inZoneinfo(readlinkSync(name)));
  } catch {
    return undefined;
  }
}

/** Minutes east of UTC of `zone` at the moment `unixSeconds`. */
function offsetAtInstant(format: Intl.DateTimeFormat, unixSeconds: number): number {
  const parts = new Map(
    format.formatToParts(new Date(unixSeconds * 1000)).map((part) => [part.type, part.value]),
  );
  const wall = wallClockAsUtc({
    year: Number(parts.get('year')),
    month: Number(parts.get('month')),
    day: Number(parts.get('day')),
    hour: Number(parts.get('hour')),
    minute: Number(parts.get('minute')),
    second: Number(parts.get('second')),
  });
  return Math.round((wall - unixSeconds) / 60);
}

/**
 * The zone named by `tz` (the TZ variable), else the one the process runs in. Resolved on first
 * use: loading the zone data costs a command some 20 ms, and a time given in UTC or as unix
 * seconds never needs it. A zone this tool cannot read has no offsets (`offsetsAt` undefined)
 * rather than UTC's, so that no time is read in it.
 */
export function localZone(tz: string | undefined): LocalZone {
  let resolved:
    { readonly name: string; readonly format: Intl.DateTimeFormat | undefined } | undefined;
  const zone = () => {
    if (resolved) return resolved;
    // Without TZ Intl reads the system's zone; Node 20 says undefined or Etc/Unknown when it
    // cannot, and runs in UTC.
    const name = tz ? zoneNameOf(tz) : validZone(Intl.DateTimeFormat().resolvedOptions().timeZone);
    const format =
      name === undefined
        ? undefined
        : new Intl.DateTimeFormat('en-US', {
            timeZone: name,
            hourCycle: 'h23',
            year: 'numeric',
            month: 'numeric',
            day: 'numeric',
            hour: 'numeric',
            minute: 'numeric',
            second: 'numeric',
          });
    resolved = {
      name: name ?? `unknown (${tz === undefined ? 'the system zone' : `TZ=${tz}`})`,
      format,
    };
    return resolved;
  };
  return {
    get name() {
      return zone().name;
    },
    offsetsAt(time: WallClockTime) {
      // Zones change offset at most twice a year, so the offsets half a day before and after
      // are the only candidates. Both fit in the hour that repeats when summer time ends (the
      // larger offset is its first occurrence); neither fits in the hour skipped when it starts.
      const { format } = zone();
      if (format === undefined) return undefined;
      const wall = wallClockAsUtc(time);
      const before = offsetAtInstant(format, wall - 43200);
      const after = offsetAtInstant(format, wall + 43200);
      return [...new Set([before, after])]
        .filter((offset) => offsetAtInstant(format, wall - offset * 60) === offset)
        .sort((a, b) => b - a);
    },
  };
}
