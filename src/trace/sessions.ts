/**
 * Matching connection_log sessions to a moment (pure): which rows held an address then, and
 * what that means for naming a user. Times are read whatever form the database stored them in.
 */
import { formatUtc, MAX_OFFSET, parseIncidentTime, type LocalZone } from './time.js';

export type PortalSchema = '3.x' | '2.x';

export interface PortalSession {
  readonly database: string;
  readonly schema: PortalSchema;
  /** NULL in a 2.x row whose certificate was gone when it was logged. */
  readonly userId: string | null;
  readonly profileId: string | null;
  /** 3.x `connection_id`; 2.x the certificate's common name. */
  readonly connectionId: string | null;
  /** 3.x only: `openvpn` or `wireguard`. */
  readonly vpnProto: string | null;
  /** As stored in the database. */
  readonly connectedAt: string;
  readonly disconnectedAt: string | null;
  /** The same moments in UTC; null when the stored text is not a time this tool reads. */
  readonly connectedAtUtc: string | null;
  readonly disconnectedAtUtc: string | null;
  /** `UTC` (3.x), or the zone assumed for 2.x times, which carry none. */
  readonly timesAre: string;
}

export type UserStatus = 'found' | 'ambiguous' | 'none' | 'unavailable';

export interface UserAnswer {
  readonly status: UserStatus;
  /** One sentence for none, ambiguous and unavailable. */
  readonly reason: string | undefined;
  readonly sessions: readonly PortalSession[];
}

/** A stored row, schema-independent. */
export interface LogRow {
  readonly userId: string | null;
  readonly profileId: string | null;
  readonly connectionId: string | null;
  readonly vpnProto: string | null;
  readonly connectedAt: string;
  readonly disconnectedAt: string | null;
}

/**
 * The zone with one offset where the clocks show a time twice: that of its first or last
 * occurrence. An unknown zone may be any: its time is taken at the earliest or latest it can be.
 */
function oneOccurrence(zone: LocalZone, which: 'first' | 'last'): LocalZone {
  return {
    get name() {
      return zone.name;
    },
    offsetsAt: (time) =>
      (zone.offsetsAt(time) ?? [MAX_OFFSET, -MAX_OFFSET])
        .slice(which === 'first' ? 0 : -1)
        .slice(0, 1),
  };
}

/**
 * Unix seconds of a stored time (text with or without zone, or a number); undefined if
 * unreadable. A 2.x time in the hour repeated when summer time ends, or in an unknown zone, is
 * no one moment: undefined, unless `which` picks the first or last it can be.
 */
export function storedTime(
  value: string,
  zone: LocalZone,
  which?: 'first' | 'last',
): number | undefined {
  if (/^\d+$/.test(value)) return Number(value);
  try {
    return parseIncidentTime(value, which ? oneOccurrence(zone, which) : zone).unixSeconds;
  } catch {
    return undefined;
  }
}

/**
 * Sessions that held the address at `at`, as the portal's own query has it (connected by then,
 * not yet disconnected), widened by `margin` on both sides for clock differences. A row whose
 * times cannot be read is kept: it cannot be ruled out; nor can a session whose start or end
 * the clocks showed twice, so it is taken at its longest.
 */
export function sessionsAt(
  rows: readonly LogRow[],
  at: number,
  margin: number,
  zone: LocalZone,
): LogRow[] {
  return rows.filter((row) => {
    const connected = storedTime(row.connectedAt, zone, 'first');
    const disconnected =
      row.disconnectedAt === null ? undefined : storedTime(row.disconnectedAt, zone, 'last');
    if (connected !== undefined && connected > at + margin) return false;
    return row.disconnectedAt === null || disconnected === undefined || disconnected >= at - margin;
  });
}

export function utcOf(value: string | null, zone: LocalZone): string | null {
  const seconds = value === null ? undefined : storedTime(value, zone);
  return seconds === undefined ? null : formatUtc(seconds);
}

/** Who a row is, for a sentence: the user, or a 2.x row's certificate. */
function whose(row: LogRow): string {
  return row.userId ?? `certificate ${row.connectionId ?? '?'}`;
}

/**
 * Why a row sessionsAt kept may not have held the address at `at`, or undefined. Its times
 * cannot be read; or it has no disconnect time while a later session of the address (`rows`
 * holds them all) began before `at`: a restart of the server or portal leaves a row open, and
 * the address went to that later session, so this one had ended by then unless two nodes share
 * the range.
 */
export function doubtOf(
  row: LogRow,
  rows: readonly LogRow[],
  at: number,
  margin: number,
  zone: LocalZone,
): string | undefined {
  const connected = storedTime(row.connectedAt, zone, 'first');
  const disconnected =
    row.disconnectedAt === null ? null : storedTime(row.disconnectedAt, zone, 'last');
  if (connected === undefined || disconnected === undefined) {
    return `the times of ${whose(row)}'s session (connected "${row.connectedAt}", disconnected "${row.disconnectedAt ?? 'never'}") cannot be read, so it can be neither ruled out nor confirmed`;
  }
  if (disconnected !== null) return undefined;
  let next: { row: LogRow; time: number } | undefined;
  for (const other of rows) {
    const time = other === row ? undefined : storedTime(other.connectedAt, zone, 'first');
    if (time === undefined || time <= connected || time >= at - margin) continue;
    if (!next || time < next.time) next = { row: other, time };
  }
  if (!next) return undefined;
  return `${whose(row)}'s session (connected ${row.connectedAt}) has no disconnect time, but ${whose(next.row)} connected with the same address at ${formatUtc(next.time)}: the row may have been left open by a restart, and ${whose(row)} may no longer have had the address`;
}

/**
 * The user of the sessions: found only when one user holds them all and at least one of that
 * user's sessions is in no doubt (`doubts`, from doubtOf).
 */
export function answerOf(
  sessions: PortalSession[],
  client: string,
  at: number,
  margin: number,
  doubts: ReadonlyMap<PortalSession, string> = new Map(),
): UserAnswer {
  const users = new Set(
    sessions.map((session) => session.userId ?? `cn:${session.connectionId ?? ''}`),
  );
  const when = `${formatUtc(at)} (within ${margin} s)`;
  const doubtText = [...doubts.values()].join('; ');
  if (users.size === 0) {
    return {
      status: 'none',
      reason: `no connection_log row has ${client} at ${when}: the portal deletes rows a month after a session ends, so an older incident cannot be matched`,
      sessions,
    };
  }
  if (users.size > 1) {
    return {
      status: 'ambiguous',
      reason: `${users.size} users had ${client} at ${when}: the sessions are listed${doubtText ? `; ${doubtText}` : ''}`,
      sessions,
    };
  }
  if (sessions.every((session) => doubts.has(session))) {
    return {
      status: 'ambiguous',
      reason: `the only sessions of ${client} at ${when} are in doubt: ${doubtText}`,
      sessions,
    };
  }
  return { status: 'found', reason: undefined, sessions };
}
