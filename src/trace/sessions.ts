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

export function answerOf(
  sessions: PortalSession[],
  client: string,
  at: number,
  margin: number,
): UserAnswer {
  const users = new Set(
    sessions.map((session) => session.userId ?? `cn:${session.connectionId ?? ''}`),
  );
  const when = `${formatUtc(at)} (within ${margin} s)`;
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
      reason: `${users.size} users had ${client} at ${when}: the sessions are listed`,
      sessions,
    };
  }
  return { status: 'found', reason: undefined, sessions };
}
