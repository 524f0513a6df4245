/**
 * The server's local time zone for reading times without a zone (incident times, eduVPN 2.x
 * log times). Built on Intl with an explicit zone name, so `TZ` from the command's environment
 * is honoured without touching the process's own zone.
 */
import type { LocalZone, WallClockTime } from '../trace/time.js';
import { wallClockAsUtc } from '../trace/time.js';

function validZone(name: string | undefined): string | undefined {
  if (!name) return undefined;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: name });
    return name;
  } catch {
    // glibc forms such as `:/etc/localtime` are not zone names; Node resolved them already
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
 * seconds never needs it.
 */
export function localZone(tz: string | undefined): LocalZone {
  let resolved: { readonly name: string; readonly format: Intl.DateTimeFormat } | undefined;
  const zone = () => {
    if (resolved) return resolved;
    const name = validZone(tz) ?? Intl.DateTimeFormat().resolvedOptions().timeZone;
    const format = new Intl.DateTimeFormat('en-US', {
      timeZone: name,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    resolved = { name, format };
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
      const wall = wallClockAsUtc(time);
      const before = offsetAtInstant(format, wall - 43200);
      const after = offsetAtInstant(format, wall + 43200);
      return [...new Set([before, after])]
        .filter((offset) => offsetAtInstant(format, wall - offset * 60) === offset)
        .sort((a, b) => b - a);
    },
  };
}
